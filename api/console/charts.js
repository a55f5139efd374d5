// Charts are uPlot's (vendor/uPlot.esm.js, MIT): the page only hands it columns.
import uPlot from "./vendor/uPlot.esm.js";
import { h } from "./dom.js";

const COLORS = ["#4fa3ff", "#d29922", "#3fb950", "#f85149", "#bc8cff"];
const AXIS = { stroke: "#8a96a3", grid: { stroke: "#27313c", width: 1 }, ticks: { stroke: "#27313c" } };

function width(el, fallback) {
  return Math.max(120, Math.floor(el.clientWidth || fallback));
}

// Every chart keeps what it holds in data-points (buckets with a value) and data-last, so
// that a reader (or a test) can tell what is drawn without reading pixels.
function record(el, columns) {
  const [, ...ys] = columns;
  const values = ys.flatMap((y) => y.filter((v) => v !== null && v !== undefined));
  el.dataset.points = String(values.filter((v) => v !== 0).length);
  const first = ys[0] || [];
  el.dataset.last = String(first.length ? first[first.length - 1] ?? "" : "");
  el.dataset.total = String(values.reduce((a, b) => a + b, 0));
}

export function lineChart(title, series, { height = 170, value = (v) => v, testid, range } = {}) {
  const holder = h("div", { class: "chart-canvas" });
  const el = h("div", { class: "chart", dataset: { testid: testid ?? title, points: "0" } },
    h("div", { class: "title" }, title), holder);
  let plot = null;
  const options = (w) => ({
    width: w,
    height,
    legend: { show: series.length > 1 },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: range ? { range } : {} },
    axes: [{ ...AXIS }, { ...AXIS, size: 80, values: (u, ticks) => ticks.map((t) => value(t)) }],
    series: [{}, ...series.map((name, i) => ({
      label: name, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
      // A minute with traffic between quiet ones is a point, not a line: show every point.
      points: { show: true, size: 4, fill: COLORS[i % COLORS.length] },
      value: (u, v) => (v === null || v === undefined ? "–" : value(v)),
    }))],
  });
  const observer = new ResizeObserver(() => {
    if (plot) plot.setSize({ width: width(holder, 400), height });
  });
  observer.observe(holder);
  return {
    el,
    update(columns) {
      if (!plot) plot = new uPlot(options(width(holder, 400)), columns, holder);
      else plot.setData(columns);
      record(el, columns);
    },
    destroy() {
      observer.disconnect();
      if (plot) plot.destroy();
    },
  };
}

export function sparkline(name, { testid } = {}) {
  const el = h("div", { class: "spark", title: name, dataset: { testid: testid ?? name, points: "0" } });
  let plot = null;
  return {
    el,
    update(columns) {
      const opts = {
        width: 110, height: 36, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: true } }, axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: COLORS[0], width: 1.25, spanGaps: false,
          points: { show: true, size: 3, fill: COLORS[0] } }],
      };
      if (!plot) plot = new uPlot(opts, columns, el);
      else plot.setData(columns);
      record(el, columns);
    },
    destroy() { if (plot) plot.destroy(); },
  };
}
