// The targets of docs/BENCHMARKS.md as data. Each entry names the
// number it judges (an extractor over results.json) and the bound(s) it
// must meet; `evaluate` computes every verdict from the results, and both
// RESULTS.md (run.mjs) and the README's table (readme.mjs) print those
// verdicts. No verdict is written by hand, so none can disagree with the
// number next to it, and a number the run did not produce is "not
// measured" — never met.
//
// Entry: { id, short?, workload, measure, unit, spec, value(r, k), bounds, each? }
//   short  — names the number where several targets share a table cell.
//   value  — the measured number (or boolean) from results `r`; undefined
//            when the run has no such field.
//   bounds — all must hold: { cmp: "<=" | ">=" | "===", limit, name? };
//            `limit` is a number, or (r, k) => number computed from the
//            same run (a peer's median, GoatDB's figure) — undefined when
//            that peer was not measured.
//   each   — (r) => keys: one verdict per key (a size, a mode), id `id@key`.

import { readFileSync } from "node:fs";

import { fmt, mb, med, p95of } from "./lib.mjs";

/** GoatDB's figures measured on this machine kind, with their source. */
export const GOAT = JSON.parse(readFileSync(new URL("./data/goatdb-measured.json", import.meta.url), "utf8"));

export const W1_OPS = ["createInstance", "openEmpty", "openBig", "createItem", "readById", "update", "bulkCreate100", "bulkRead100", "readAll", "simpleQuery", "complexQuery", "count", "keys"];
/** W1 operations whose cost depends on the big repository's size: GoatDB's
 * figure is a bar for them only when this run used the same size. */
const SIZED = new Set(["openBig", "readAll"]);

export const goatW1 = (r, op) => (SIZED.has(op) && r.config?.big !== GOAT.w1.items ? undefined : GOAT.w1.operations[op]?.mean);
const ibexW3 = (r, n) => (r.w3?.[n]?.ibex && !r.w3[n].ibex.error ? r.w3[n].ibex : undefined);
const w4row = (r, impl, mode) => (r.w4?.rows ?? []).find((x) => x.impl === impl && x.mode === mode && x.ok);
const reconcileRows = (r) => (Array.isArray(r.w5reconcile) ? r.w5reconcile.filter((x) => typeof x.mode === "string" && x.overheadBytes !== undefined) : []);
const reconcileRow = (r, k) => reconcileRows(r).find((x) => `${x.commits}/${x.mode}` === k);
const MB = 2 ** 20;

export const TARGETS = [
  // W1: every operation ≥ 10× faster than GoatDB here and ahead of TinyBase
  // in the same run; open 100k ≤ 150 ms and create instance ≤ 30 ms.
  ...W1_OPS.map((op) => ({
    id: `W1.${op}`,
    short: { simpleQuery: "simple", complexQuery: "complex" }[op],
    workload: "W1",
    measure: `${op}, median`,
    unit: "ms",
    spec: "BENCHMARKS.md W1",
    value: (r) => med(r.w1?.ibex?.[op]),
    bounds: [
      { cmp: "<=", name: "GoatDB/10", limit: (r) => (goatW1(r, op) === undefined ? undefined : goatW1(r, op) / 10) },
      { cmp: "<=", name: "TinyBase", limit: (r) => med(r.w1?.tinybase?.[op]) },
      ...(op === "openBig" ? [{ cmp: "<=", limit: 150 }] : op === "createInstance" ? [{ cmp: "<=", limit: 30 }] : []),
    ],
  })),
  { id: "W2.p50", short: "p50", workload: "W2", measure: "write → all affected subscribers notified, p50", unit: "ms", spec: "BENCHMARKS.md W2", value: (r) => med(r.w2?.lat), bounds: [{ cmp: "<=", limit: 1 }] },
  { id: "W2.p95", short: "p95", workload: "W2", measure: "write → all affected subscribers notified, p95", unit: "ms", spec: "BENCHMARKS.md W2", value: (r) => p95of(r.w2?.lat), bounds: [{ cmp: "<=", limit: 3 }] },
  { id: "W3.first@100000", short: "first", workload: "W3", measure: "100k items: first 50 rows, median", unit: "ms", spec: "BENCHMARKS.md W3", value: (r) => med(ibexW3(r, 100_000)?.first), bounds: [{ cmp: "<=", limit: 150 }] },
  { id: "W3.all@100000", short: "all", workload: "W3", measure: "100k items: all loaded, median", unit: "ms", spec: "BENCHMARKS.md W3", value: (r) => med(ibexW3(r, 100_000)?.all), bounds: [{ cmp: "<=", limit: 400 }] },
  { id: "W3.first@1000000", short: "first", workload: "W3", measure: "1M items: first 50 rows, median", unit: "ms", spec: "BENCHMARKS.md W3", value: (r) => med(ibexW3(r, 1_000_000)?.first), bounds: [{ cmp: "<=", limit: 1500 }] },
  {
    id: "W3.longest",
    short: "longest task",
    workload: "W3",
    measure: "longest main-thread task over every load",
    unit: "ms",
    spec: "BENCHMARKS.md W3",
    each: (r) => Object.keys(r.w3 ?? {}),
    value: (r, n) => {
      const l = ibexW3(r, n)?.longest;
      return l?.length ? Math.max(...l) : undefined;
    },
    bounds: [{ cmp: "<=", limit: 50 }],
  },
  // W4, one commit per edit (BENCHMARKS.md sets no target per 1k edits).
  { id: "W4.rate", short: "apply", workload: "W4", measure: "commit per edit: apply rate", unit: "edits/s", spec: "BENCHMARKS.md W4", value: (r) => ((x) => (x ? x.edits / (x.applyMs / 1000) : undefined))(w4row(r, "ibex", "edit")), bounds: [{ cmp: ">=", limit: 10_000 }] },
  { id: "W4.bytes", short: "bytes", workload: "W4", measure: "commit per edit: bytes kept", unit: "bytes", spec: "BENCHMARKS.md W4", value: (r) => w4row(r, "ibex", "edit")?.bytes, bounds: [{ cmp: "<=", limit: 40 * MB }] },
  { id: "W4.reopen", short: "reopen", workload: "W4", measure: "commit per edit: reopen, median", unit: "ms", spec: "BENCHMARKS.md W4", value: (r) => med(w4row(r, "ibex", "edit")?.reopen), bounds: [{ cmp: "<=", limit: 50 }] },
  { id: "W4.ratio", short: "20k edits", workload: "W4", measure: "Node: open an item of 20,000 one-character edits / of the same text written once", unit: "×", spec: "issue 15", value: (r) => r.w4ratio?.ratio, bounds: [{ cmp: "<=", limit: 1.5 }] },
  { id: "W4.memory", short: "memory", workload: "W4", measure: "commit per edit: memory after reopen", unit: "bytes", spec: "BENCHMARKS.md W4", value: (r) => ((x) => (x ? Math.max(0, x.memory) : undefined))(w4row(r, "ibex", "edit")), bounds: [{ cmp: "<=", limit: 50 * MB }] },
  { id: "W5.p50", short: "p50", workload: "W5", measure: "one edit browser A → server → browser B, p50", unit: "ms", spec: "BENCHMARKS.md W5", value: (r) => med(r.w5?.lat), bounds: [{ cmp: "<=", limit: 5 }] },
  {
    id: "W5.reconcile.overhead",
    short: "overhead",
    workload: "W5",
    measure: "reconcile 100k commits / 1%: overhead bytes",
    unit: "bytes",
    spec: "BENCHMARKS.md W5",
    each: (r) => reconcileRows(r).filter((x) => x.commits === 100_000 && x.mode !== "nothing").map((x) => `${x.commits}/${x.mode}`),
    value: (r, k) => reconcileRow(r, k)?.overheadBytes,
    bounds: [{ cmp: "<=", limit: 60 * 1024 }],
  },
  {
    id: "W5.reconcile.roundTrips",
    workload: "W5",
    measure: "reconcile 100k commits / 1%: round trips",
    unit: "round trips",
    spec: "BENCHMARKS.md W5",
    each: (r) => reconcileRows(r).filter((x) => x.commits === 100_000 && x.mode !== "nothing").map((x) => `${x.commits}/${x.mode}`),
    value: (r, k) => reconcileRow(r, k)?.roundTrips,
    bounds: [{ cmp: "<=", limit: 2 }],
  },
  {
    id: "W5.reconnect.bytes",
    short: "bytes",
    workload: "W5",
    measure: "reconnect with nothing new: bytes (one repository)",
    unit: "bytes",
    spec: "BENCHMARKS.md W5",
    each: (r) => reconcileRows(r).filter((x) => x.mode === "nothing").map((x) => `${x.commits}/${x.mode}`),
    value: (r, k) => reconcileRow(r, k)?.overheadBytes,
    bounds: [{ cmp: "<=", limit: 200 }],
  },
  {
    id: "W5.reconnect.roundTrips",
    workload: "W5",
    measure: "reconnect with nothing new: round trips",
    unit: "round trips",
    spec: "BENCHMARKS.md W5",
    each: (r) => reconcileRows(r).filter((x) => x.mode === "nothing").map((x) => `${x.commits}/${x.mode}`),
    value: (r, k) => reconcileRow(r, k)?.roundTrips,
    bounds: [{ cmp: "<=", limit: 1 }],
  },
  {
    id: "W6.merge",
    short: "merge",
    workload: "W6",
    measure: "merge time, median",
    unit: "ms",
    spec: "BENCHMARKS.md W6",
    each: (r) => Object.keys(r.w6?.sizes ?? {}),
    value: (r, n) => med(r.w6.sizes[n]?.ibex?.ms),
    bounds: [{ cmp: "<=", name: "Loro × 2", limit: (r, n) => ((l) => (l === undefined ? undefined : 2 * l))(med(r.w6.sizes[n]?.loro?.ms)) }],
  },
  {
    id: "W6.hash",
    workload: "W6",
    measure: "identical state hash over every delivery order",
    unit: "bool",
    spec: "BENCHMARKS.md W6",
    each: (r) => Object.keys(r.w6?.sizes ?? {}),
    value: (r, n) => r.w6.sizes[n]?.ibex?.identical,
    bounds: [{ cmp: "===", limit: true, name: "identical hash" }],
  },
  { id: "W7.p50", short: "A → B p50", workload: "W7", measure: "write in tab A → visible in tab B, p50", unit: "ms", spec: "BENCHMARKS.md W7", value: (r) => med(r.w7?.lat), bounds: [{ cmp: "<=", limit: 20 }] },
  // The hand-over as BENCHMARKS.md defines it: leader tab closed → the first
  // write made in the new leader is durable in its engine. Results of runs
  // before this measure existed have only `w7.handover` (until the leader
  // flag flipped, before the new engine had loaded anything): not this.
  { id: "W7.handover", short: "hand-over", workload: "W7", measure: "leader tab closed → first write in the new leader durable, median", unit: "ms", spec: "BENCHMARKS.md W7", value: (r) => med(r.w7?.handoverDurable), bounds: [{ cmp: "<=", limit: 300 }] },
  {
    id: "W8.total@100000",
    workload: "W8",
    measure: "100k items: JS heap (mirror) + WASM memory",
    unit: "bytes",
    spec: "BENCHMARKS.md W8",
    value: (r) => ((x) => (x && x.heapBytes !== undefined && x.engineMemoryBytes !== undefined ? x.heapBytes + x.engineMemoryBytes : undefined))(ibexW3(r, 100_000)),
    bounds: [{ cmp: "<=", limit: 35 * MB }],
  },
  { id: "W9.gzip", workload: "W9", measure: "WASM module, gzip -9", unit: "bytes", spec: "BENCHMARKS.md W9", value: (r) => r.w9?.ibex?.gzip, bounds: [{ cmp: "<=", limit: 200 * 1024 }] },
  { id: "W10.p95", short: "p95", workload: "W10", measure: "relay p95", unit: "ms", spec: "BENCHMARKS.md W10", value: (r) => r.w10?.baseline?.p95, bounds: [{ cmp: "<=", limit: 50 }] },
  {
    id: "W10.lost",
    short: "lost",
    workload: "W10",
    measure: "lost commits (relay, and relay beside each attacker)",
    unit: "commits",
    spec: "BENCHMARKS.md W10",
    value: (r) => {
      const runs = ["baseline", "slow-reader", "splices"].map((k) => r.w10?.[k]).filter(Boolean);
      return runs.length && runs.every((x) => typeof x.lost === "number") ? runs.reduce((s, x) => s + x.lost, 0) : undefined;
    },
    bounds: [{ cmp: "===", limit: 0 }],
  },
  {
    id: "W10.victims",
    short: "victims' p95",
    workload: "W10",
    measure: "victims' relay p95 beside an attacker",
    unit: "ms",
    spec: "BENCHMARKS.md W10",
    each: (r) => ["slow-reader", "splices"].filter((k) => r.w10?.[k]),
    value: (r, k) => r.w10[k]?.p95,
    bounds: [{ cmp: "<=", name: "2 × baseline p95", limit: (r) => (typeof r.w10?.baseline?.p95 === "number" ? 2 * r.w10.baseline.p95 : undefined) }],
  },
  { id: "W10.idle", short: "RSS", workload: "W10", measure: "idle authenticated connections: server RSS", unit: "bytes", spec: "BENCHMARKS.md W10", value: (r) => r.w10?.idle?.serverRss, bounds: [{ cmp: "<=", limit: 300 * MB }] },
  {
    // "0 lost" for many writers to one repository: every client ends up
    // holding the union, in one state.
    id: "W10.union",
    short: "short of the union",
    workload: "W10",
    measure: "union: clients short of the union, plus distinct states beyond one",
    unit: "clients",
    spec: "BENCHMARKS.md W10 (0 lost)",
    value: (r) => ((u) => (u && typeof u.clientsShort === "number" && typeof u.distinctStates === "number" ? u.clientsShort + (u.distinctStates - 1) : undefined))(r.w10?.union),
    bounds: [{ cmp: "===", limit: 0 }],
  },
  {
    id: "W11.p95",
    short: "cross-instance p95",
    workload: "W11",
    measure: "cross-instance relay p95 (3 servers on PostgreSQL)",
    unit: "ms",
    spec: "BENCHMARKS.md W11",
    value: (r) => r.w11?.relayPg3?.p95,
    bounds: [{ cmp: "<=", name: "2 × one server on PostgreSQL", limit: (r) => (typeof r.w11?.relayPg1?.p95 === "number" ? 2 * r.w11.relayPg1.p95 : undefined) }],
  },
  {
    id: "W11.lost",
    short: "lost",
    workload: "W11",
    measure: "cross-instance relay: deliveries missing",
    unit: "commits",
    spec: "BENCHMARKS.md W11",
    value: (r) => ((x) => (x && typeof x.expected === "number" ? x.expected - x.deliveries : undefined))(r.w11?.relayPg3),
    bounds: [{ cmp: "===", limit: 0 }],
  },
];

/** A number in a target's unit, for tables. */
export function show(unit, v) {
  if (v === undefined) return "not measured";
  if (unit === "ms") return fmt(v);
  if (unit === "bytes") return v < 1024 ? `${Math.round(v)} B` : mb(v);
  if (unit === "edits/s") return `${Math.round(v).toLocaleString("en")} edits/s`;
  if (unit === "bool") return v ? "yes" : "no";
  if (unit === "×") return `${Number(v).toFixed(2)}×`;
  // "1 round trip", "2 round trips".
  return `${Number(v).toLocaleString("en")} ${v === 1 ? unit.replace(/s$/, "") : unit}`;
}

/** A fixed bound as BENCHMARKS.md writes it: "≤ 30 ms", "≤ 200 KB". */
function showLimit(unit, v) {
  if (unit === "ms" && Number.isInteger(v) && v < 10_000) return `${v.toLocaleString("en")} ms`;
  if (unit === "bytes" && v >= 1024 && v % 1024 === 0) return v % 2 ** 20 === 0 ? `${v / 2 ** 20} MB` : `${v / 1024} KB`;
  return show(unit, v);
}

const SYM = { "<=": "≤", ">=": "≥", "===": "=" };
const holds = (cmp, v, lim) => (cmp === "<=" ? v <= lim : cmp === ">=" ? v >= lim : v === lim);

/** Every target evaluated against results `r`: a Map from id (`id@key`
 * for per-key entries) to { id, workload, measure, unit, spec, value,
 * shown, bounds: [{ text, ok }], target, met } where met is true, false
 * (some bound missed, whatever else is unknown) or undefined (the value or
 * a bound it needs was not measured). */
export function evaluate(r) {
  const out = new Map();
  for (const t of TARGETS) {
    const keys = t.each ? t.each(r) : [undefined];
    for (const k of keys) {
      const id = k === undefined ? t.id : `${t.id}@${k}`;
      const raw = t.value(r, k);
      const value = raw === null || (typeof raw === "number" && !Number.isFinite(raw)) ? undefined : raw;
      const bounds = t.bounds.map((b) => {
        const limit = typeof b.limit === "function" ? b.limit(r, k) : b.limit;
        const lim = typeof limit === "number" && !Number.isFinite(limit) ? undefined : limit;
        const text = t.unit === "bool" ? b.name : b.name ? `${SYM[b.cmp]} ${b.name} (${lim === undefined ? "not measured" : show(t.unit, lim)})` : `${SYM[b.cmp]} ${showLimit(t.unit, lim)}`;
        return { text, ok: value === undefined || lim === undefined ? undefined : holds(b.cmp, value, lim) };
      });
      const met = bounds.some((b) => b.ok === false) ? false : bounds.every((b) => b.ok === true) ? true : undefined;
      const target = bounds.map((b) => b.text).join(", ");
      out.set(id, { id, short: t.short, workload: t.workload, measure: t.measure, unit: t.unit, spec: t.spec, value, shown: show(t.unit, value), bounds, target, labelled: t.short ? `${t.short} ${target}` : target, met });
    }
  }
  return out;
}

/** The verdict of a set of targets, for one table cell: "yes" when every
 * one is met; "no (…)" naming the missed bounds; "not measured" when none
 * is missed but some could not be checked; "—" when there are none. */
export function metCell(verdicts, ids, { bold = false } = {}) {
  const vs = ids.map((id) => verdicts.get(id));
  if (!vs.length) return "—";
  if (vs.some((v) => v === undefined || v.met === undefined) && !vs.some((v) => v?.met === false)) {
    // Name what is missing when part of the cell could be checked.
    const open = ids.filter((id, i) => vs[i]?.met !== true).map((id, i) => vs[ids.indexOf(id)]?.short ?? TARGETS.find((t) => t.id === id.split("@")[0])?.short);
    return vs.some((v) => v?.met === true) && open.every(Boolean) ? `not measured: ${[...new Set(open)].join(", ")}` : "not measured";
  }
  const missed = vs.filter((v) => v.met === false).flatMap((v) => v.bounds.filter((b) => b.ok === false).map((b) => (v.short && vs.length > 1 ? `${v.short} ${b.text}` : b.text)));
  if (!missed.length) return "yes";
  const no = bold ? "**no**" : "no";
  return vs.length === 1 && vs[0].bounds.length === 1 ? no : `${no} (misses ${[...new Set(missed)].join("; ")})`;
}

/** The bounds of a set of targets as one cell ("—" when there are none).
 * A target the results hold no key for (a size not run) still reads as
 * its bounds, from the entry itself. */
export function targetCell(verdicts, ids) {
  const texts = ids.map((id) => verdicts.get(id)?.labelled ?? staticTarget(id)).filter(Boolean);
  return texts.length ? [...new Set(texts)].join("; ") : "—";
}

function staticTarget(id) {
  const t = TARGETS.find((x) => x.id === id.split("@")[0]) ?? TARGETS.find((x) => x.id === id);
  if (!t) return undefined;
  const text = t.bounds.map((b) => (t.unit === "bool" ? b.name : typeof b.limit === "function" ? `${SYM[b.cmp]} ${b.name}` : `${SYM[b.cmp]} ${showLimit(t.unit, b.limit)}`)).join(", ");
  return t.short ? `${t.short} ${text}` : text;
}
