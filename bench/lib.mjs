// Statistics and formatting shared by the runner (run.mjs), the targets
// (targets.mjs) and the README generator (readme.mjs), so a number is
// computed and printed the same way wherever it appears.

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const p95 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)];
};
/** Median / p95 of a list that may be missing or empty: undefined then,
 * never 0 or NaN (a missing measurement must not pass a target). */
export const med = (xs) => (Array.isArray(xs) && xs.length ? median(xs) : undefined);
export const p95of = (xs) => (Array.isArray(xs) && xs.length ? p95(xs) : undefined);

/** Milliseconds for a table. */
export function fmt(ms) {
  if (ms === undefined) return "—";
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms).toLocaleString("en")} ms`;
  if (ms >= 1) return `${ms.toFixed(2)} ms`;
  if (ms >= 0.001) return `${(ms * 1000).toFixed(1)} µs`;
  return `${(ms * 1e6).toFixed(0)} ns`;
}

const one = (x) => x.toLocaleString("en", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
export const mb = (b) => (b === undefined ? "—" : b < 2 ** 20 ? `${one(b / 1024)} KB` : `${one(b / 2 ** 20)} MB`);
export const ratio = (a, b) => (a === undefined || b === undefined || b === 0 ? "—" : `${(a / b).toFixed(a / b < 0.1 ? 3 : 2)}×`);
