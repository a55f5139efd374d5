// Overview: the traffic of the last hour (or day), live, and spend against every budget the
// viewer's requests spend in.
import { lineChart } from "./charts.js";
import { h, replace, table } from "./dom.js";
import { ms, num, pct, usd } from "./format.js";
import { onFigures } from "./refresh.js";

// Over the last `step` seconds: the bucket still filling, and the part of the one before it
// that the window still covers (a sliding window, so a new minute does not read as zero).
function recent(t, counts, step) {
  const n = t.length;
  if (n === 0) return null;
  const elapsed = Math.min(step, Math.max(0, Date.now() / 1000 - t[n - 1]));
  const before = n > 1 ? counts[n - 2] * (1 - elapsed / step) : 0;
  return (counts[n - 1] + before) / step;
}

export function mount(root, ctx) {
  let window_ = "hour";
  const counters = h("div", { class: "counters" });
  const charts = {
    rps: lineChart("requests/s", ["requests/s"], { value: (v) => num(v, 2) }),
    latency: lineChart("latency", ["p50", "p95"], { value: ms }),
    errors: lineChart("error rate", ["errors"], { value: pct, range: [0, 1] }),
    tps: lineChart("tokens/s", ["tokens/s"], { value: (v) => num(v, 1) }),
    spend: lineChart("spend per bucket", ["USD"], { value: usd }),
  };
  const budgets = h("div", { dataset: { testid: "budgets" } });
  const toggle = h("select", {
    "aria-label": "window", dataset: { testid: "window" },
    onchange: (event) => { window_ = event.target.value; refresh(); },
  }, h("option", { value: "hour" }, "last hour, per minute"),
  h("option", { value: "day" }, "last day, per 5 minutes"));
  root.append(
    h("div", { class: "toolbar" }, h("h1", null, "Overview"), h("span", { class: "grow" }), toggle),
    counters,
    h("h2", null, "Traffic"),
    h("div", { class: "charts" }, Object.values(charts).map((c) => c.el)),
    h("h2", null, "Budgets that apply to you"),
    budgets,
  );

  async function load() {
    const [series, dashboard] = await Promise.all([
      ctx.api.get(`/timeseries?window=${window_}`), ctx.api.get("/dashboard"),
    ]);
    const o = series.overall;
    const s = series.summary;
    charts.spend.el.querySelector(".title").textContent =
      window_ === "hour" ? "spend per minute" : "spend per 5 minutes";
    replace(counters,
      counter("requests/s", num(recent(series.t, o.requests, series.step_s), 2), "rps"),
      counter("p50 latency", ms(s.p50_ms), "p50"),
      counter("p95 latency", ms(s.p95_ms), "p95"),
      counter("error rate", pct(s.error_rate), "error-rate"),
      counter("tokens/s", num(recent(series.t, o.completion_tokens, series.step_s), 1), "tps"),
      counter(`requests (${window_})`, num(s.requests), "requests"),
      counter(`spend (${window_})`, usd(s.spend_usd), "spend"),
      counter("total spend", usd(dashboard.spend_usd), "total-spend"),
    );
    charts.rps.update([series.t, o.requests_per_s]);
    charts.latency.update([series.t, o.p50_ms, o.p95_ms]);
    charts.errors.update([series.t, o.error_rate]);
    charts.tps.update([series.t, o.tokens_per_s]);
    charts.spend.update([series.t, o.spend_usd]);
    replace(budgets, dashboard.budgets.length
      ? table(["scope", "period", "spent", "", "reserved#", "limit#", "remaining#"],
        dashboard.budgets.map(budgetRow))
      : h("p", { class: "dim" }, "No budget applies to your requests."));
  }

  const stop = onFigures(ctx, load);
  const refresh = () => load().catch(ctx.problem);
  return {
    unmount() {
      stop();
      for (const chart of Object.values(charts)) chart.destroy();
    },
  };
}

function counter(label, value, testid) {
  return h("div", { class: "counter", dataset: { testid: `counter-${testid}` } },
    h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function budgetRow(b) {
  const used = b.limit_usd > 0 ? (b.spent_usd + b.reserved_usd) / b.limit_usd : 1;
  const fill = h("span");
  // Through the CSSOM: the page's policy refuses style attributes.
  fill.style.width = `${Math.min(used, 1) * 100}%`;
  return h("tr", { dataset: { scope: b.scope, spent: String(b.spent_usd) } },
    h("td", null, b.scope), h("td", null, b.period + (b.period_start ? ` from ${b.period_start}` : "")),
    h("td", null, usd(b.spent_usd)),
    h("td", null, h("span", { class: used >= 1 ? "bar over" : "bar", title: pct(used) }, fill)),
    h("td", { class: "num" }, usd(b.reserved_usd)), h("td", { class: "num" }, usd(b.limit_usd)),
    h("td", { class: "num" }, usd(b.remaining_usd)));
}
