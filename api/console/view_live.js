// Live requests: every request as it arrives and finishes, from the log; click one to watch
// its tokens come in. Items are kept as they arrive and drawn at most four times a second,
// the newest SHOW of them: at a thousand requests a second the page samples the feed, it
// does not redraw per request.
import { h, replace, table } from "./dom.js";
import { clock, ms, shortId, usd } from "./format.js";

const KEEP = 200;
const SHOW = 50;
const DRAW_EVERY_MS = 250;

export function mount(root, ctx) {
  const rows = new Map(); // request id -> row, newest first
  let received = 0;
  let selected = null;
  let stopTokens = null;
  let stopFeed = null;
  let drawTimer = null;
  let stopped = false;
  const rate = h("span", { class: "dim", dataset: { testid: "feed-rate" } });
  const body = h("div", { dataset: { testid: "feed" } });
  const watch = h("div", { class: "panel", dataset: { testid: "watch" } },
    h("p", { class: "dim" }, "Click a request to watch its tokens."));
  root.append(
    h("div", { class: "toolbar" }, h("h1", null, "Live requests"), h("span", { class: "grow" }), rate),
    h("div", { class: "split" }, body, watch),
  );
  const seconds = new Map(); // second -> items received in it, for the rate

  function take(item) {
    received += 1;
    const second = Math.floor(Date.now() / 1000);
    seconds.set(second, (seconds.get(second) || 0) + 1);
    const known = rows.get(item.request_id);
    const row = known ? { ...known, ...defined(item) } : { ...item, events: [] };
    row.events = [...(known ? known.events : []), item.position];
    rows.delete(item.request_id);
    rows.set(item.request_id, row);
    while (rows.size > KEEP) rows.delete(rows.keys().next().value);
    schedule();
  }

  function schedule() {
    if (drawTimer === null && !stopped) drawTimer = setTimeout(draw, DRAW_EVERY_MS);
  }

  function draw() {
    drawTimer = null;
    const now = Math.floor(Date.now() / 1000);
    let recent = 0;
    for (const [second, count] of seconds) {
      if (second < now - 5) seconds.delete(second);
      else if (second < now) recent += count;
    }
    rate.textContent = `${(recent / 5).toFixed(1)} updates/s · ${received} received · newest ${SHOW} shown`;
    const newest = [...rows.values()].slice(-SHOW).reverse();
    replace(body, table(["time", "request", "state", "model", "strategy", "cost#", "latency#", "prompt"],
      newest.map(feedRow), { class: "feed", dataset: { testid: "feed-table" } }));
  }

  function feedRow(r) {
    return h("tr", {
      class: r.request_id === selected ? "clickable selected" : "clickable",
      dataset: { requestId: r.request_id, state: r.state, events: r.events.join(",") },
      onclick: () => select(r.request_id),
    },
    h("td", { class: "mono" }, clock(r.received_at || r.at)),
    h("td", { class: "mono" }, h("a", { href: `#/request/${r.request_id}` }, shortId(r.request_id))),
    h("td", null, h("span", { class: `badge ${r.state}` }, r.state)),
    h("td", null, r.model || "–"), h("td", null, r.strategy || "–"),
    h("td", { class: "num" }, r.cost_usd === undefined ? "–" : usd(r.cost_usd)),
    h("td", { class: "num" }, r.latency_ms === undefined ? "–" : ms(r.latency_ms)),
    h("td", { class: "dim" }, r.prompt || ""));
  }

  function select(requestId) {
    if (stopTokens) stopTokens();
    selected = requestId;
    const calls = new Map(); // call id -> element holding its text
    const seqs = [];
    const list = h("div", { dataset: { testid: "tokens", requestId, seqs: "" } });
    replace(watch,
      h("div", { class: "toolbar" }, h("strong", { class: "mono" }, shortId(requestId)),
        h("a", { href: `#/request/${requestId}` }, "its story")),
      list);
    stopTokens = ctx.live.subscribe(`tokens:${requestId}`, (item) => {
      let text = calls.get(item.call_id);
      if (!text) {
        text = h("div", { class: "tokens", dataset: { call: item.call_id } });
        calls.set(item.call_id, text);
        list.append(h("div", { class: "dim mono" }, `call ${shortId(item.call_id)}`), text);
      }
      text.append(item.deltas.map(([token]) => token).join(""));
      seqs.push(item.seq);
      list.dataset.seqs = seqs.join(",");
    }, { fromPosition: 0 });
    schedule();
  }

  ctx.api.get("/requests?limit=100").then((page) => {
    if (stopped) return;
    for (const row of [...page.requests].reverse()) {
      rows.set(row.request_id, { ...row, events: [row.position] });
    }
    draw();
    // From where the page was read: nothing is missed between the two, nothing comes twice.
    stopFeed = ctx.live.subscribe("requests", take, { fromPosition: page.position });
  }, ctx.problem);

  return {
    unmount() {
      stopped = true;
      clearTimeout(drawTimer);
      if (stopFeed) stopFeed();
      if (stopTokens) stopTokens();
    },
  };
}

function defined(item) {
  return Object.fromEntries(Object.entries(item).filter(([, v]) => v !== null && v !== undefined));
}
