// The README's performance table, generated from bench/results.json.
//
//   node bench/readme.mjs            rewrite README.md between the markers
//   node bench/readme.mjs --check    exit 1 if README.md is not what
//                                    results.json generates (npm test runs
//                                    this, so a hand edit cannot survive)
//   --results <file>                 another results file (a full run's)
//
// Each row below says which numbers of results.json it prints and which
// targets (targets.mjs) decide its "met?" cell. A number the results do
// not hold prints "not measured"; nothing is filled in by hand.

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { fmt, mb, med, p95of } from "./lib.mjs";
import { GOAT, evaluate, goatW1, metCell, show, targetCell } from "./targets.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const START = "<!-- perf:start -->";
const END = "<!-- perf:end -->";
const NM = "not measured";

const ms = (v) => (v === undefined ? NM : fmt(v));
const bytes = (v) => (v === undefined ? NM : mb(v));
const w1 = (r, impl, op) => med(r.w1?.[impl]?.[op]);
const big = (r) => (r.config?.big ?? 100_000).toLocaleString("en");
/** A W3 row of one implementation, or a reason it has none. */
const w3 = (r, n, impl) => {
  const x = r.w3?.[n]?.[impl];
  return x?.error ? { failed: true } : x;
};
const w3ms = (r, n, impl, k) => (w3(r, n, impl)?.failed ? "failed" : ms(med(w3(r, n, impl)?.[k])));
// The Long Tasks API reports only tasks over 50 ms: 0 means none was.
const longest = (x) => (x?.failed ? "failed" : !x?.longest?.length ? NM : Math.max(...x.longest) === 0 ? "none over 50 ms" : fmt(Math.max(...x.longest)));
const w4 = (r, impl, mode) => (r.w4?.rows ?? []).find((x) => x.impl === impl && x.mode === mode && x.ok);
const rate = (x) => (x ? show("edits/s", x.edits / (x.applyMs / 1000)) : NM);
const goatBar = (r, op) => (goatW1(r, op) === undefined ? "GoatDB here: other size" : `GoatDB here ${fmt(goatW1(r, op))}`);
const reconcile = (r, mode, commits) => (Array.isArray(r.w5reconcile) ? r.w5reconcile.find((x) => x.mode === mode && x.commits === commits && x.overheadBytes !== undefined) : undefined);
const nothingKeys = (r) => (Array.isArray(r.w5reconcile) ? r.w5reconcile.filter((x) => x.mode === "nothing" && x.overheadBytes !== undefined).map((x) => `${x.commits}/nothing`) : []);
const w6sizes = (r) => Object.keys(r.w6?.sizes ?? {});

/** One row: `what` (label), `ibex` and `peers` (cells), `bar` (GoatDB or
 * other reference, before the targets), `targets` (ids whose verdicts make
 * the "met?" cell; none → "—"). Each takes the results. */
const ROWS = [
  { what: (r) => `W1 open database (${big(r)} items)`, ibex: (r) => ms(w1(r, "ibex", "openBig")), peers: (r) => `TinyBase ${ms(w1(r, "tinybase", "openBig"))}`, bar: (r) => goatBar(r, "openBig"), targets: () => ["W1.openBig"] },
  { what: () => "W1 create item (durable)", ibex: (r) => ms(w1(r, "ibex", "createItem")), peers: (r) => `TinyBase ${ms(w1(r, "tinybase", "createItem"))}, Dexie ${ms(w1(r, "dexie", "createItem"))}`, bar: (r) => goatBar(r, "createItem"), targets: () => ["W1.createItem"] },
  { what: () => "W1 bulk create 100 (durable)", ibex: (r) => ms(w1(r, "ibex", "bulkCreate100")), peers: (r) => `TinyBase ${ms(w1(r, "tinybase", "bulkCreate100"))}, Dexie ${ms(w1(r, "dexie", "bulkCreate100"))}`, bar: (r) => goatBar(r, "bulkCreate100"), targets: () => ["W1.bulkCreate100"] },
  { what: (r) => `W1 read ${big(r)} items`, ibex: (r) => ms(w1(r, "ibex", "readAll")), peers: (r) => `TinyBase ${ms(w1(r, "tinybase", "readAll"))}`, bar: (r) => goatBar(r, "readAll"), targets: () => ["W1.readAll"] },
  {
    what: () => "W1 simple / complex query",
    ibex: (r) => `${ms(w1(r, "ibex", "simpleQuery"))} / ${ms(w1(r, "ibex", "complexQuery"))}`,
    // Which TinyBase the numbers are: results from before W1 used its
    // queries module compared row copies, so say which this run used.
    peers: (r) => `TinyBase${r.w1Method?.tinybase === "queries-module" ? " (queries module)" : " (row filter, not its queries module)"} ${ms(w1(r, "tinybase", "simpleQuery"))} / ${ms(w1(r, "tinybase", "complexQuery"))}`,
    bar: (r) => `${goatBar(r, "simpleQuery")} / ${goatW1(r, "complexQuery") === undefined ? "other size" : fmt(goatW1(r, "complexQuery"))}`,
    targets: () => ["W1.simpleQuery", "W1.complexQuery"],
  },
  { what: () => "W1 create instance", ibex: (r) => ms(w1(r, "ibex", "createInstance")), peers: (r) => `TinyBase ${ms(w1(r, "tinybase", "createInstance"))}`, bar: (r) => goatBar(r, "createInstance"), targets: () => ["W1.createInstance"] },
  { what: () => "W2 write → affected live queries notified", ibex: (r) => (r.w2?.lat?.length ? `p50 ${fmt(med(r.w2.lat))}, p95 ${fmt(p95of(r.w2.lat))}` : NM), peers: () => "none run", bar: () => "", targets: () => ["W2.p50", "W2.p95"] },
  { what: () => "W3 reload with 100k items: first 50 rows", ibex: (r) => w3ms(r, 100_000, "ibex", "first"), peers: (r) => `TinyBase ${w3ms(r, 100_000, "tinybase", "first")}, Dexie ${w3ms(r, 100_000, "dexie", "first")}`, bar: () => "", targets: () => ["W3.first@100000"] },
  {
    what: () => "W3 … all 100k in memory / longest main-thread task (any size)",
    ibex: (r) => `${w3ms(r, 100_000, "ibex", "all")} / ${maxLongest(r, "ibex")}`,
    peers: (r) => `TinyBase ${w3ms(r, 100_000, "tinybase", "all")} / ${maxLongest(r, "tinybase")}`,
    bar: () => "",
    targets: (r) => ["W3.all@100000", ...(Object.keys(r.w3 ?? {}).length ? Object.keys(r.w3).map((n) => `W3.longest@${n}`) : ["W3.longest"])],
  },
  { what: () => "W3 reload with 1M items: first 50 rows", ibex: (r) => w3ms(r, 1_000_000, "ibex", "first"), peers: (r) => `TinyBase ${w3ms(r, 1_000_000, "tinybase", "first")}, Dexie ${w3ms(r, 1_000_000, "dexie", "first")}`, bar: () => "", targets: () => ["W3.first@1000000"] },
  {
    what: () => "W4 B4 trace, one commit per edit: apply / reopen",
    ibex: (r) => `${rate(w4(r, "ibex", "edit"))} / ${ms(med(w4(r, "ibex", "edit")?.reopen))}`,
    peers: (r) => ["loro", "automerge"].map((impl) => `${impl === "loro" ? "Loro" : "Automerge"} ${rate(w4(r, impl, "edit"))} / ${ms(med(w4(r, impl, "edit")?.reopen))}`).join("; "),
    bar: () => "",
    targets: () => ["W4.rate", "W4.reopen"],
  },
  {
    what: () => "W4 … one commit per edit: bytes kept / memory after reopen",
    ibex: (r) => `${bytes(w4(r, "ibex", "edit")?.bytes)} / ${bytes(mem(w4(r, "ibex", "edit")))}`,
    peers: (r) => ["loro", "automerge"].map((impl) => `${impl === "loro" ? "Loro" : "Automerge"} ${bytes(w4(r, impl, "edit")?.bytes)} / ${bytes(mem(w4(r, impl, "edit")))}`).join("; "),
    bar: () => "",
    targets: () => ["W4.bytes", "W4.memory"],
  },
  {
    what: () => "W4 B4 trace, one commit per 1k edits: reopen",
    ibex: (r) => ms(med(w4(r, "ibex", "batch")?.reopen)),
    peers: (r) => `Loro ${ms(med(w4(r, "loro", "batch")?.reopen))}, Automerge ${ms(med(w4(r, "automerge", "batch")?.reopen))}`,
    bar: () => "",
    targets: () => [],
  },
  {
    what: () => "W5 one edit browser A → server → browser B",
    ibex: (r) => (r.w5?.lat?.length ? `p50 ${fmt(med(r.w5.lat))}, p95 ${fmt(p95of(r.w5.lat))}` : NM),
    peers: () => "—",
    bar: () => `GoatDB here p50 ${fmt(GOAT.w5.p50)}, p95 ${fmt(GOAT.w5.p95)}`,
    targets: () => ["W5.p50"],
  },
  {
    what: () => "W5 reconcile 100k commits after 1% divergence: overhead beyond the commits / round trips",
    ibex: (r) =>
      ["random", "one-sided"]
        .map((mode) => {
          const x = reconcile(r, mode, 100_000);
          return `${mode} ${x ? `${show("bytes", x.overheadBytes)} / ${x.roundTrips}` : NM}`;
        })
        .join("; "),
    peers: () => "—",
    bar: () => "",
    targets: () => ["random", "one-sided"].flatMap((mode) => [`W5.reconcile.overhead@100000/${mode}`, `W5.reconcile.roundTrips@100000/${mode}`]),
  },
  {
    what: () => "W5 reconnect with nothing new: bytes / round trips",
    ibex: (r) => (nothingKeys(r).length ? nothingKeys(r).map((k) => ((x) => `${Number(x.commits).toLocaleString("en")} commits: ${show("bytes", x.overheadBytes)} / ${x.roundTrips}`)(r.w5reconcile.find((y) => `${y.commits}/${y.mode}` === k))).join("; ") : NM),
    peers: () => "—",
    bar: () => "",
    targets: (r) => (nothingKeys(r).length ? nothingKeys(r).flatMap((k) => [`W5.reconnect.bytes@${k}`, `W5.reconnect.roundTrips@${k}`]) : ["W5.reconnect.bytes", "W5.reconnect.roundTrips"]),
  },
  // W6: one row per size the run measured.
  (r) =>
    (w6sizes(r).length ? w6sizes(r) : [undefined]).map((n) => {
      const row = n === undefined ? undefined : r.w6.sizes[n];
      const cell = (impl) => (row?.[impl]?.ms?.length ? fmt(med(row[impl].ms)) : NM);
      return {
        what: () => (row ? `W6 ${row.writers.toLocaleString("en")} concurrent writers on one item: merge` : "W6 concurrent writers on one item: merge"),
        ibex: () => (row?.ibex ? `${cell("ibex")}, ${row.ibex.identical ? "identical" : "DIFFERENT"} on every replica order` : NM),
        peers: () => `Loro ${cell("loro")}, Automerge ${cell("automerge")}`,
        bar: () => "",
        targets: () => (n === undefined ? ["W6.hash", "W6.merge"] : [`W6.hash@${n}`, `W6.merge@${n}`]),
      };
    }),
  {
    what: () => "W7 tab A → tab B / hand-over (leader tab closed → first write in the new leader durable)",
    ibex: (r) => `${ms(med(r.w7?.lat))} / ${ms(med(r.w7?.handoverDurable))}`,
    peers: () => "—",
    bar: () => "",
    targets: () => ["W7.p50", "W7.handover"],
  },
  {
    what: () => "W8 memory with 100k items (mirror + engine)",
    ibex: (r) => bytes(((x) => (x && !x.failed && x.heapBytes !== undefined && x.engineMemoryBytes !== undefined ? x.heapBytes + x.engineMemoryBytes : undefined))(w3(r, 100_000, "ibex"))),
    peers: (r) => `TinyBase store ${bytes(((x) => (x && !x.failed ? x.heapBytes : undefined))(w3(r, 100_000, "tinybase")))}`,
    bar: () => "",
    targets: () => ["W8.total@100000"],
  },
  { what: () => "W9 WASM module, gzip", ibex: (r) => bytes(r.w9?.ibex?.gzip), peers: (r) => `Loro ${bytes(r.w9?.loro?.gzip)}, Automerge ${bytes(r.w9?.automerge?.gzip)}`, bar: () => "", targets: () => ["W9.gzip"] },
  {
    what: (r) => `W10 server relay${r.w10?.baseline?.clients ? `, ${r.w10.baseline.clients.toLocaleString("en")} clients` : ""}: p95 / lost commits`,
    ibex: (r) => (r.w10?.baseline ? `${ms(r.w10.baseline.p95)} / ${r.w10.baseline.lost}` : NM),
    peers: () => "—",
    bar: () => "",
    targets: () => ["W10.p95", "W10.lost"],
  },
  {
    what: () => "W10 … beside an attacker: victims' p95",
    ibex: (r) => ["slow-reader", "splices"].map((k) => `${k} ${r.w10?.[k] ? ms(r.w10[k].p95) : NM}`).join(", "),
    peers: () => "—",
    bar: () => "",
    targets: () => ["W10.victims@slow-reader", "W10.victims@splices"],
  },
  {
    what: (r) => `W10 ${r.w10?.idle?.connections ? r.w10.idle.connections.toLocaleString("en") : ""} idle connections: server RSS`.replace("W10  ", "W10 "),
    ibex: (r) => bytes(r.w10?.idle?.serverRss),
    peers: () => "—",
    bar: () => "",
    targets: () => ["W10.idle"],
  },
  {
    what: (r) => `W10 union${r.w10?.union?.clients ? `: ${r.w10.union.clients} writers to one repository, then all sync` : ""}`,
    ibex: (r) => ((u) => (u && typeof u.clientsShort === "number" ? `${u.clientsShort} clients short, ${u.distinctStates} state(s), converged in ${u.convergeSeconds} s` : NM))(r.w10?.union),
    peers: () => "—",
    bar: () => "",
    targets: () => ["W10.union"],
  },
  {
    what: () => "W11 3 servers on PostgreSQL: cross-instance relay p95 / missing deliveries",
    ibex: (r) => ((x) => (x ? `${ms(x.p95)} / ${x.expected - x.deliveries}` : NM))(r.w11?.relayPg3),
    peers: (r) => (r.w11?.relayPg1 ? `one server on PostgreSQL ${ms(r.w11.relayPg1.p95)}, on files ${ms(r.w11.relayFiles.p95)}` : "—"),
    bar: () => "",
    targets: () => ["W11.p95", "W11.lost"],
  },
  {
    what: () => "W11 acknowledged commits/s, 1 / 3 servers on one PostgreSQL",
    ibex: (r) => (r.w11?.throughput1 ? `${r.w11.throughput1.commitsPerSecond.toLocaleString("en")} / ${r.w11.throughput3.commitsPerSecond.toLocaleString("en")}` : NM),
    peers: () => "—",
    bar: () => "",
    targets: () => [],
  },
];

function maxLongest(r, impl) {
  const sizes = Object.keys(r.w3 ?? {});
  const xs = sizes.map((n) => w3(r, n, impl));
  if (!xs.length || xs.some((x) => !x || x.failed || !x.longest?.length)) return xs.some((x) => x?.failed) ? "failed" : NM;
  return longest({ longest: xs.flatMap((x) => x.longest) });
}

function mem(x) {
  return x && typeof x.memory === "number" ? Math.max(0, x.memory) : undefined;
}

/** The text between the markers, for results `r`. */
/** Which run the numbers come from: a full run, or a full run with some
 * workloads measured again later (`run.mjs --only`). */
function when(r) {
  const min = (sec) => (sec ? `, ${Math.round(sec / 60)} min` : "");
  const day = (d) => d?.slice(0, 10) ?? "an unknown date";
  if (!r.full) return `the full run of ${day(r.date)}${min(r.seconds)}`;
  return `the full run of ${day(r.full.date)}${min(r.full.seconds)}, with ${r.remeasured.map((w) => w.toUpperCase()).join(", ")} measured again with newer code on ${day(r.date)}${min(r.seconds)}; the others are from the full run`;
}

export function perfSection(r) {
  if (r.quick) throw new Error("these are quick-mode results (small sizes, one run): the README quotes full runs only");
  const V = evaluate(r);
  const m = r.machine ?? {};
  const lines = [];
  lines.push(
    `Generated by \`node bench/readme.mjs\` from [\`bench/results.json\`](bench/results.json): ${when(r)} (${m.cpu ?? "unknown CPU"}, ${m.cores ?? "?"} cores, ${m.memGiB ?? "?"} GiB, Chromium ${m.chromium ?? "?"} headless on OPFS, Node ${m.node ?? "?"}). Medians unless stated; peers measured in the same run; targets from [docs/BENCHMARKS.md](docs/BENCHMARKS.md) as data (\`bench/targets.mjs\`); GoatDB here: [\`bench/data/goatdb-measured.json\`](bench/data/goatdb-measured.json) (GoatDB ${GOAT.source.goatdb}, ${GOAT.source.machine.split(",")[0]}, its own suite in Chromium on OPFS). Everything else, with p95 and ratios, is in [\`bench/RESULTS.md\`](bench/RESULTS.md).`,
    "",
  );
  lines.push("| workload | Ibex | peers in the same run | bar and target | met? |", "|---|---|---|---|---|");
  for (const entry of ROWS.flatMap((x) => (typeof x === "function" ? x(r) : [x]))) {
    const ids = entry.targets(r);
    const bar = [entry.bar(r), ids.length ? targetCell(V, ids) : ""].filter(Boolean).join("; ") || "—";
    lines.push(`| ${entry.what(r)} | ${entry.ibex(r)} | ${entry.peers(r)} | ${bar} | ${metCell(V, ids)} |`);
  }
  const all = [...V.values()];
  lines.push("", `All targets evaluated from this run: ${all.filter((v) => v.met === true).length} met, ${all.filter((v) => v.met === false).length} missed, ${all.filter((v) => v.met === undefined).length} not measured (each one in RESULTS.md § Targets).`);
  return lines.join("\n");
}

/** README text with the section between the markers replaced. */
export function withSection(readme, section) {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md has no ${START} … ${END} markers`);
  return `${readme.slice(0, a + START.length)}\n${section}\n${readme.slice(b)}`;
}

/** Rewrites README.md from results `r`; returns whether it changed. */
export function writeReadme(r, readmePath = join(here, "..", "README.md")) {
  const before = readFileSync(readmePath, "utf8");
  const after = withSection(before, perfSection(r));
  if (after !== before) writeFileSync(readmePath, after);
  return after !== before;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf("--results");
  const file = i > 0 ? process.argv[i + 1] : join(here, "results.json");
  const r = JSON.parse(readFileSync(file, "utf8"));
  const readmePath = join(here, "..", "README.md");
  if (process.argv.includes("--check")) {
    const before = readFileSync(readmePath, "utf8");
    if (withSection(before, perfSection(r)) !== before) {
      console.error("README.md's performance table is not what bench/results.json generates: run `node bench/readme.mjs`.");
      process.exit(1);
    }
    console.log("README.md performance table matches bench/results.json");
  } else {
    console.log(`README.md performance table: ${writeReadme(r, readmePath) ? "rewritten" : "unchanged"}`);
  }
}
