// Strategies: what each one did (requests, fallbacks, agreement, money saved against the
// dearest eligible model), its last hour, and advice for a capability and budget you give.
import { sparkline } from "./charts.js";
import { h, replace, table } from "./dom.js";
import { ms, num, usd } from "./format.js";
import { onFigures } from "./refresh.js";

export function mount(root, ctx) {
  const body = h("div");
  const advice = h("div", { dataset: { testid: "advice" } });
  const capability = h("select", { name: "capability", dataset: { testid: "capability" } });
  const form = h("form", {
    class: "toolbar",
    onsubmit: (event) => {
      event.preventDefault();
      recommend(new FormData(event.target)).catch(ctx.problem);
    },
  }, capability,
  h("label", null, "budget USD ", h("input", { name: "budget_usd", type: "number", min: "0",
    step: "any", size: 8, dataset: { testid: "budget" } })),
  h("label", null, "prompt tokens ", h("input", { name: "prompt_tokens", type: "number", min: "0",
    value: "1000", size: 7 })),
  h("label", null, "answer tokens ", h("input", { name: "answer_tokens", type: "number", min: "1",
    value: "256", size: 6 })),
  h("button", { type: "submit" }, "Recommend"));
  root.append(h("h1", null, "Strategies"), body,
    h("h2", null, "What to use for a task"), form, advice);
  let sparks = [];

  ctx.api.get("/models/capabilities").then((found) => {
    replace(capability, Object.keys(found.capabilities).sort().map((name) =>
      h("option", { value: name }, name)));
  }, ctx.problem);

  async function recommend(data) {
    const task = { capability: data.get("capability") };
    for (const field of ["budget_usd", "prompt_tokens", "answer_tokens"]) {
      const raw = data.get(field);
      if (raw !== null && raw !== "") task[field] = Number(raw);
    }
    const found = await ctx.api.post("/orchestration/recommendations", task);
    replace(advice,
      h("p", null, found.recommended
        ? h("span", null, "Recommended: ", h("strong", { dataset: { testid: "recommended" } }, found.recommended))
        : h("span", { class: "error", dataset: { testid: "recommended" } }, "nothing fits"),
      " · ", h("span", { class: "dim" }, found.reason)),
      table(["strategy", "models", "expected cost#", "expected latency#", "expected quality#", "why"],
        found.strategies.map((s) => h("tr", { dataset: { strategy: s.strategy } },
          h("td", null, s.strategy), h("td", null, s.models.join(", ")),
          h("td", { class: "num" }, usd(s.expected_cost_usd)),
          h("td", { class: "num" }, ms(s.expected_latency_ms)),
          h("td", { class: "num" }, num(s.expected_quality, 3)), h("td", { class: "dim" }, s.reason)))),
      found.excluded.length ? table(["left out", "why"], found.excluded.map((x) =>
        h("tr", null, h("td", null, x.model), h("td", { class: "dim" }, x.reason)))) : null);
  }

  async function load() {
    const [outcomes, series] = await Promise.all([
      ctx.api.get("/orchestration/performance"), ctx.api.get("/timeseries?window=hour"),
    ]);
    for (const spark of sparks) spark.destroy();
    sparks = [];
    const rows = Object.entries(outcomes.strategies).map(([name, s]) => {
      const spark = sparkline(`${name} requests`, { testid: `spark-${name}` });
      sparks.push(spark);
      const row = h("tr", { dataset: { strategy: name } },
        h("td", null, name), h("td", { class: "num" }, num(s.requests)),
        h("td", { class: "num" }, num(s.failed)), h("td", { class: "num" }, num(s.fallbacks)),
        h("td", { class: "num" }, s.agreement === null ? "–" : num(s.agreement, 2)),
        h("td", { class: "num" }, usd(s.cost_usd)),
        h("td", { class: "num", dataset: { testid: "saved" } }, usd(s.savings_usd)),
        h("td", { class: "num" }, `${ms(s.latency_ms.p50)} / ${ms(s.latency_ms.p95)}`),
        h("td", null, spark.el));
      const trend = series.strategies[name];
      row.trend = () => { if (trend) spark.update([series.t, trend.requests]); };
      return row;
    });
    replace(body,
      h("p", { class: "dim" }, `Money saved is against ${outcomes.savings_baseline}. ` +
        `${outcomes.requests.completed} completed, ${outcomes.requests.failed} failed, ` +
        `${outcomes.requests.cached} from the cache.`),
      rows.length ? table(["strategy", "requests#", "failed#", "fallbacks#", "agreement#", "cost#",
        "saved#", "latency p50 / p95#", "last hour"], rows, { dataset: { testid: "strategies" } })
        : h("p", { class: "dim" }, "No requests yet."));
    for (const row of rows) row.trend();
  }

  const stop = onFigures(ctx, load);
  return {
    unmount() {
      stop();
      for (const spark of sparks) spark.destroy();
    },
  };
}
