// How numbers read on the page: the same rules everywhere.

export function usd(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "$0";
  if (Math.abs(value) >= 0.01) return `$${value.toFixed(2)}`;
  // Ten decimals show any amount one call can cost, without an exponent.
  return `$${value.toFixed(10).replace(/0+$/, "").replace(/\.$/, "")}`;
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value < 10) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${value.toFixed(1)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

export function num(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
}

export function pct(value) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(1)}%`;
}

const two = (n) => String(n).padStart(2, "0");

// The local time of day (Intl's formatters cost a feed at a thousand rows a second too much).
export function clock(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
}

export function shortId(id) {
  return id ? id.slice(-12) : "–";
}
