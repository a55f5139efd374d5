// Building the page's elements from data: text always goes in as text, never as HTML.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function table(headers, rows, attrs) {
  return h("table", attrs,
    h("thead", null, h("tr", null, headers.map((name) =>
      h("th", { class: name.endsWith("#") ? "num" : null }, name.replace(/#$/, ""))))),
    h("tbody", null, rows));
}

export function copyButton(label, value) {
  return h("button", {
    type: "button", class: "copy", title: `copy ${value}`, dataset: { copy: value },
    onclick: (event) => {
      const button = event.currentTarget;
      // The clipboard needs a secure context or a user's permission; the value stays shown.
      const done = () => { button.textContent = "copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value).then(done, () => { button.textContent = value; });
      } else {
        button.textContent = value;
      }
    },
  }, label);
}

// Label and value pairs in two columns: each part its own cell, text or element.
export function pairs(attrs, ...parts) {
  return h("div", { ...attrs, class: "kv" }, parts.flat().map((part) =>
    part instanceof Node ? h("span", null, part) : h("span", null, String(part ?? "–"))));
}
