// A request's story: `atom replay trace` in the browser. Every step in log order with its
// offset from the receipt, the route's candidates and exclusions, reservations and their
// settlements, each call with its tokens (played back at the speed they were recorded), the
// scores and the answer.
import { copyButton, h, pairs, replace, table } from "./dom.js";
import { ms, num, shortId, usd } from "./format.js";

const SHOWN_APART = new Set(["messages", "candidates", "excluded", "members", "result", "text", "reason",
  "ensemble", "params", "order"]);

export function mount(root, ctx, requestId) {
  const body = h("div", { dataset: { testid: "story" } });
  const timers = [];
  const form = h("form", {
    class: "toolbar",
    onsubmit: (event) => {
      event.preventDefault();
      const id = event.target.elements.id.value.trim();
      if (id) ctx.go(`#/request/${encodeURIComponent(id)}`);
    },
  }, h("h1", null, "A request's story"), h("span", { class: "grow" }),
  h("input", { name: "id", placeholder: "request id", size: 40, value: requestId || "" }),
  h("button", { type: "submit" }, "Show"));
  root.append(form, body);

  async function load() {
    if (!requestId) {
      replace(body, h("p", { class: "dim" }, "Give a request id, or click one in Live requests."));
      return;
    }
    let trace;
    try {
      trace = await ctx.api.get(`/requests/${encodeURIComponent(requestId)}`);
    } catch (error) {
      if (error.status === 404) {
        replace(body, h("p", { class: "error" }, `No request ${requestId} that you may see.`));
        return;
      }
      throw error;
    }
    render(trace);
  }

  function render(trace) {
    const received = trace.steps[0];
    replace(body,
      h("div", { class: "panel" },
        pairs(null,
          "request", h("span", null, h("span", { class: "mono" }, trace.request_id), " ",
            copyButton("copy id", trace.request_id)),
          "outcome", h("span", { class: `badge ${trace.outcome}`, dataset: { testid: "outcome" } },
            trace.outcome),
          "received", received.at,
          "tenancy", trace.tenancy,
          "log position", h("span", null, h("span", { class: "mono" }, `#${trace.position}`), " ",
            copyButton("copy position", String(trace.position)),
          h("span", { class: "dim" }, ` audit: atom replay trace --db <log> ${trace.request_id}`)),
        )),
      h("h2", null, `${trace.steps.length} steps`),
      h("ol", { class: "steps", dataset: { testid: "steps" } },
        trace.steps.map((step) => h("li", {
          class: step.type, dataset: { type: step.type, position: String(step.position) },
        },
        h("div", { class: "step-head" },
          h("span", { class: "mono dim" }, `+${ms(step.offset_ms)}`),
          h("span", { class: "mono dim" }, `#${step.position}`),
          h("span", { class: "type" }, step.type)),
        detail(step, trace)))),
      unsettled(trace),
    );
  }

  function detail(step, trace) {
    const d = step.data;
    const parts = [kv(d)];
    if (step.type === "RequestReceived") {
      const asked = (d.messages || []).filter((m) => m.role === "user").map((m) => m.content);
      if (asked.length) parts.push(h("div", { class: "answer" }, String(asked[asked.length - 1])));
    } else if (step.type === "RouteDecided") {
      parts.push(h("div", { class: "dim" }, d.reason));
      if (d.candidates && d.candidates.length) {
        parts.push(table(["candidate", "score#", "quality#", "expected cost#", "reserves#"],
          d.candidates.map((c) => h("tr", { dataset: { candidate: c.model } },
            h("td", null, c.model === d.chosen ? h("strong", null, `${c.model} (chosen)`) : c.model),
            h("td", { class: "num" }, num(c.score, 6)), h("td", { class: "num" }, num(c.quality, 3)),
            h("td", { class: "num" }, usd(c.expected_cost_usd)),
            h("td", { class: "num" }, usd(c.reservation_usd)))),
        { dataset: { testid: "candidates" } }));
      }
      if (d.excluded && d.excluded.length) {
        parts.push(table(["excluded", "why"], d.excluded.map((x) =>
          h("tr", { dataset: { excluded: x.model } }, h("td", null, x.model), h("td", null, x.reason))),
        { dataset: { testid: "excluded" } }));
      }
    } else if (step.type === "BudgetReserved") {
      const fate = trace.reservations.find((r) => r.reservation_id === d.reservation_id);
      if (fate) parts.push(h("div", { class: "dim" }, `this reservation: ${fate.state}`));
    } else if (step.type === "ModelCallCompleted" || step.type === "ModelCallFailed") {
      parts.push(tokens(trace.tokens[d.call_id], d.call_id));
      if (d.text) parts.push(h("div", { class: "answer" }, d.text));
    } else if (step.type === "EnsembleCombined") {
      parts.push(table(["member", "vote", "weight#", "cost#"], (d.members || []).map((m) =>
        h("tr", null, h("td", null, m.member), h("td", null, m.error ? `failed: ${m.error}` : String(m.vote)),
          h("td", { class: "num" }, num(m.weight, 3)), h("td", { class: "num" }, usd(m.cost_usd))))));
    } else if (step.type === "RequestCompleted") {
      parts.push(h("div", { class: "answer", dataset: { testid: "answer" } }, d.text));
    }
    return parts;
  }

  function tokens(found, callId) {
    if (!found) return h("div", { class: "dim" }, "no tokens streamed");
    const out = h("div", { class: "tokens", dataset: { testid: `tokens-${callId}`, played: "" } },
      found.each.map(([text]) => text).join(""));
    const play = h("button", {
      type: "button", dataset: { testid: `play-${callId}` },
      onclick: () => {
        // At the recorded speed: each token when it came, from the first one.
        out.textContent = "";
        out.dataset.played = "playing";
        const first = found.each.length ? found.each[0][1] : 0;
        found.each.forEach(([text, at], i) => {
          timers.push(setTimeout(() => {
            out.append(text);
            if (i === found.each.length - 1) out.dataset.played = "done";
          }, at - first));
        });
      },
    }, "play at recorded speed");
    return h("div", null,
      h("div", { class: "dim" }, `${found.count} tokens: the first at ${ms(found.first_ms)}, ` +
        `then over ${ms(found.duration_ms)} `, play), out);
  }

  load().catch(ctx.problem);
  return { unmount() { for (const t of timers) clearTimeout(t); } };
}

function kv(data) {
  const shown = Object.entries(data).filter(([k, v]) => !SHOWN_APART.has(k) && v !== null && v !== "");
  return pairs(null, shown.flatMap(([k, v]) => [k, h("span", { class: "mono" }, value(k, v))]));
}

function value(key, v) {
  if (key.endsWith("_usd")) return usd(v);
  if (key.endsWith("_ms")) return ms(v);
  if (key.endsWith("_id") || key === "subject") return typeof v === "string" && v.length > 16 ? `…${shortId(v)}` : String(v);
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function unsettled(trace) {
  const open = trace.reservations.filter((r) => r.state !== "settled");
  const calls = trace.unfinished_calls || [];
  if (!open.length && !calls.length && trace.outcome !== "unfinished") return null;
  return h("div", { class: "panel" },
    open.map((r) => h("div", { class: "error" },
      `${r.state}: reservation ${r.reservation_id} of ${usd(r.reserved_usd)} for ${r.model} was never settled`)),
    calls.map((c) => h("div", { class: "error" }, `unfinished: call ${c} has no outcome on record`)),
    trace.outcome === "unfinished" ? h("div", { class: "dim" }, "the request has not finished yet") : null);
}
