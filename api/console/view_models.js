// Models: each one's health and why, speed, calls, errors, cost, learned quality and trends.
import { sparkline } from "./charts.js";
import { h, replace, table } from "./dom.js";
import { ms, num, usd } from "./format.js";
import { onFigures } from "./refresh.js";

export function mount(root, ctx) {
  const body = h("div");
  root.append(h("h1", null, "Models"), body);
  let sparks = [];

  async function load() {
    const [catalog, performance, series, dashboard] = await Promise.all([
      ctx.api.get("/models"), ctx.api.get("/performance"),
      ctx.api.get("/timeseries?window=hour"), ctx.api.get("/dashboard"),
    ]);
    for (const spark of sparks) spark.destroy();
    sparks = [];
    const figures = performance.models;
    const names = [...new Set([...catalog.models.map((m) => m.name), ...Object.keys(figures)])];
    const rows = names.map((name) => {
      const entry = catalog.models.find((m) => m.name === name);
      const f = figures[name];
      const trend = series.models[name];
      const cells = ["calls", "p50_ms", "ttft_p50_ms"].map((column) => {
        const spark = sparkline(`${name} ${column}`, { testid: `spark-${name}-${column}` });
        sparks.push(spark);
        return { spark, column };
      });
      const row = h("tr", { dataset: { model: name } },
        h("td", null, h("strong", null, name),
          entry ? h("div", { class: "dim" }, `${entry.provider} · ${entry.model}`) : null),
        h("td", null, health(entry, f, dashboard.recent_failures, name)),
        h("td", { class: "num" }, num(f ? f.calls : 0)),
        h("td", null, errors(f)),
        h("td", { class: "num" }, ms(f && f.ttft_ms.p50)),
        h("td", { class: "num" }, num(f && f.tokens_per_s, 1)),
        h("td", { class: "num" }, `${ms(f && f.latency_ms.p50)} / ${ms(f && f.latency_ms.p95)}`),
        h("td", { class: "num" }, usd(f ? f.cost_usd : 0)),
        h("td", null, quality(f)),
        h("td", null, h("div", { class: "sparks" }, cells.map(({ spark }) => spark.el))),
      );
      // Drawn once the row is in the page, so that uPlot can measure it.
      row.trend = () => {
        for (const { spark, column } of cells) {
          if (trend) spark.update([series.t, trend[column]]);
        }
      };
      return row;
    });
    replace(body, table(
      ["model", "health", "calls#", "errors by kind", "ttft p50#", "tokens/s#",
        "latency p50 / p95#", "cost#", "learned quality", "last hour: calls · p50 · ttft"],
      rows, { dataset: { testid: "models" } }));
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

function health(entry, figures, failures, name) {
  if (entry && !entry.available) {
    return [h("span", { class: "badge unavailable" }, "unavailable"),
      h("div", { class: "dim" }, entry.unavailable_reason)];
  }
  const circuit = (figures && figures.circuit) || (entry && entry.circuit) || "closed";
  const failure = failures.find((f) => f.model === name);
  let why = "calls succeed";
  if (circuit !== "closed" && failure) why = `${failure.kind}: ${failure.message}`;
  else if (!figures || figures.calls === 0) why = "no calls yet";
  else if (figures.failed > 0 && failure) why = `last failure ${failure.kind}: ${failure.message}`;
  return [h("span", { class: `badge ${circuit}`, dataset: { testid: "circuit" } }, circuit),
    h("div", { class: "dim" }, why)];
}

function errors(figures) {
  const kinds = figures ? Object.entries(figures.errors_by_kind) : [];
  return kinds.length ? kinds.map(([kind, n]) => h("div", null, `${kind} ${n}`)) : "–";
}

function quality(figures) {
  const rows = figures ? Object.entries(figures.quality).filter(([cap]) => cap !== "*") : [];
  return rows.length
    ? rows.map(([cap, q]) => h("div", null, `${cap} ${num(q.mean_score, 2)} (${q.scores})`))
    : h("span", { class: "dim" }, "no scores yet");
}
