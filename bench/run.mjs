// `npm run bench`: workloads of docs/BENCHMARKS.md, Ibex side by side
// with peers in the same run, in headless Chromium (Debian's) on OPFS,
// pages served from 127.0.0.1. Writes bench/RESULTS.md and results.json,
// then the README's performance table from them (readme.mjs). Verdicts
// come from the targets in targets.mjs; GoatDB's figures from
// data/goatdb-measured.json.
// `--quick` (run by `npm test` so the harness cannot rot): small sizes, one
// run, output to bench/results-quick.{md,json} (not committed), README
// untouched. `--report-only`: re-render RESULTS.md from results.json.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import { chromium } from "playwright-core";

import { fmt, mb, median, p95, ratio } from "./lib.mjs";
import { findTrace } from "./node/w4.mjs";
import { wasmBreakdown } from "./wasm_size.mjs";
import { w6 } from "./node/w6.mjs";
import { writeReadme } from "./readme.mjs";
import { GOAT, TARGETS, W1_OPS, evaluate, goatW1, metCell, targetCell } from "./targets.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const quick = process.argv.includes("--quick");
// `--only w10,w6`: re-measure those workloads and keep the others from the
// last results.json (a full run takes half an hour on this machine).
const only = process.argv.includes("--only") ? new Set(process.argv[process.argv.indexOf("--only") + 1].split(",")) : null;
const want = (w) => !only || only.has(w);
const cfg = quick
  ? { big: 1_000, runs: 1, bigRuns: 1, writes: 5, edits: 5, handovers: 1, coldSizes: [1_000], coldRuns: 1, traceEdits: 2_000, reopens: 1, conflictSizes: [25], conflictRuns: 1, reconcileCases: ["2000:0.01"], w10: { repos: 5, perRepo: 4, seconds: 4, idle: 200, unionClients: 5, unionSeconds: 3 } }
  : { big: 100_000, runs: 10, bigRuns: 5, writes: 200, edits: 100, handovers: 5, coldSizes: [10_000, 100_000, 1_000_000], coldRuns: 5, traceEdits: Infinity, reopens: 5, conflictSizes: [100, 400, 10_000], conflictRuns: 5, reconcileCases: ["100000:0.01", "1000000:0.001"], w10: { repos: 100, perRepo: 10, seconds: 60, idle: 10_000, unionClients: 100, unionSeconds: 60 } };
const port = 4180 + Math.floor(Math.random() * 100);

const LABEL = {
  createInstance: "Create instance", openEmpty: "Open database (empty)", openBig: `Open database (${cfg.big.toLocaleString("en")} items)`,
  createItem: "Create item", readById: "Read item by ID", update: "Update item", bulkCreate100: "Bulk create 100 items",
  bulkRead100: "Bulk read 100 items", readAll: `Read ${cfg.big.toLocaleString("en")} items`, simpleQuery: "Simple query",
  complexQuery: "Complex query with sort", count: "Count", keys: "Keys",
};
// Where cargo puts binaries: CARGO_TARGET_DIR when set (a second checkout
// sharing one target directory), else the repository's target/.
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");

function largestWasm(dir) {
  let best = null;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".wasm") && (!best || statSync(p).size > statSync(best).size)) best = p;
    }
  };
  walk(dir);
  return best;
}

function size(file) {
  const b = readFileSync(file);
  return { raw: b.length, gzip: gzipSync(b, { level: 9 }).length };
}

async function main() {
  if (process.argv.includes("--report-only")) {
    // Re-renders RESULTS.md from results.json (e.g. after a format change).
    const r = JSON.parse(readFileSync(join(here, quick ? "results-quick.json" : "results.json"), "utf8"));
    writeFileSync(join(here, quick ? "results-quick.md" : "RESULTS.md"), report(r));
    return;
  }
  // ibex-server serves the repository root (bench pages, the SDK) and /sync
  // on one origin. The newest build wins: `npm run bench` builds release,
  // `npm test` (which runs --quick) has built debug.
  const bin = ["release", "debug"]
    .map((p) => join(targetDir, p, "ibex-server"))
    .filter((f) => existsSync(f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!bin) throw new Error("ibex-server is not built: run `cargo build --release -p ibex-server`");
  const dataDir = mkdtempSync(join(tmpdir(), "ibex-bench-"));
  const server = spawn(bin, ["--port", String(port), "--host", "127.0.0.1", "--data", dataDir, "--static", root], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, RUST_LOG: "warn" } });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch {}
    if (i > 100) throw new Error("ibex-server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const started = Date.now();
  // w1Method: how W1's peers were driven, so a reader of results.json (and
  // the README generator) can tell this from runs that filtered TinyBase's
  // rows by hand instead of using its queries module.
  const fresh = { quick, config: cfg, date: new Date().toISOString(), machine: {}, w1: {}, w1Method: { tinybase: "queries-module" }, w2: null, w5: null, w7: null, w9: null };
  // A partial run keeps the full run's date and length beside its own and
  // names what it re-measured, so the report never calls it a full run.
  const prev = only ? JSON.parse(readFileSync(join(here, quick ? "results-quick.json" : "results.json"), "utf8")) : null;
  const results = prev ? { ...prev, date: fresh.date, full: prev.full ?? { date: prev.date, seconds: prev.seconds }, remeasured: [...new Set([...(prev.remeasured ?? []), ...only])].sort() } : fresh;
  try {
    results.machine = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), chromium: browser.version(), node: process.version };
    const page = async () => {
      const ctx = await browser.newContext();
      const p = await ctx.newPage();
      const errors = [];
      p.on("pageerror", (e) => errors.push(String(e)));
      await p.goto(`http://127.0.0.1:${port}/bench/pages/bench.html`);
      await p.waitForFunction(() => window.benchReady === true);
      return { p, ctx, errors };
    };
    for (const impl of want("w1") ? ["ibex", "tinybase", "dexie"] : []) {
      const { p, ctx, errors } = await page();
      process.stdout.write(`W1 ${impl}… `);
      const t0 = Date.now();
      results.w1[impl] = await p.evaluate((args) => window.runW1(args.impl, args.cfg), { impl, cfg });
      console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s`);
      if (errors.length) throw new Error(`${impl}: ${errors.join("; ")}`);
      await ctx.close();
    }
    if (want("w2")) {
      const { p, ctx } = await page();
      process.stdout.write("W2 ibex… ");
      results.w2 = await p.evaluate((args) => window.runW2(args), { big: cfg.big, writes: cfg.writes });
      console.log("done");
      await ctx.close();
    }
    if (want("w3")) results.w3 = await w3(browser);
    if (want("w5")) results.w5 = await w5(browser);
    if (want("w7")) results.w7 = await w7(browser);
    if (want("w4")) results.w4 = w4();
    if (want("w4") || want("w4ratio")) results.w4ratio = editsVsOnce();
    if (want("w5reconcile")) results.w5reconcile = reconcile();
    if (want("w10")) results.w10 = await w10();
    if (want("w11")) results.w11 = w11();
    if (want("w6")) {
      results.w6 = await w6({ ns: cfg.conflictSizes, runs: cfg.conflictRuns, seed: Number(process.env.IBEX_BENCH_SEED ?? Date.now() % 1e6) });
      console.log(`W6 order seed: ${results.w6.seed} (IBEX_BENCH_SEED=${results.w6.seed} replays it)`);
    }
    results.w9 = {
      ibex: size(join(root, "packages/db/wasm/ibex_wasm_bg.wasm")),
      loro: size(largestWasm(join(here, "node_modules/loro-crdt"))),
      automerge: size(largestWasm(join(here, "node_modules/@automerge/automerge"))),
    };
    const unoptimized = join(root, "target/wasm32-unknown-unknown/wasm/ibex_wasm.wasm");
    if (existsSync(unoptimized)) results.w9where = wasmBreakdown(unoptimized);
  } finally {
    await browser.close();
    server.kill();
  }
  results.seconds = Math.round((Date.now() - started) / 1000);
  // Measurements first: a report that fails to render loses nothing
  // (`node bench/run.mjs --report-only` renders them again).
  const base = quick ? "results-quick" : "results";
  writeFileSync(join(here, `${base}.json`), JSON.stringify(results, null, 2));
  const md = report(results);
  writeFileSync(join(here, quick ? "results-quick.md" : "RESULTS.md"), md);
  console.log(md);
  // The README's performance table quotes full runs only; regenerating it
  // here keeps it from drifting from the results.json just written. A
  // failure here must not cost the 20-minute run: the results are saved,
  // and `node bench/readme.mjs` can be run again.
  if (!quick) {
    try {
      console.log(`README.md performance table: ${writeReadme(results) ? "rewritten" : "unchanged"}`);
    } catch (e) {
      console.error(`README.md not rewritten: ${e.message}`);
      process.exitCode = 1;
    }
  }
}

/** W4: the editing trace in Node, one child process per implementation and
 * mode (node/w4.mjs). Skipped, with the reason, when the trace is absent. */
function w4() {
  const trace = findTrace(root);
  if (!trace) return { skipped: "the B4 trace (automerge-paper.json.gz) was not found: set IBEX_TRACE or place it at bench/data/" };
  const out = { rows: [] };
  for (const impl of ["ibex", "loro", "automerge"]) {
    for (const mode of ["edit", "batch"]) {
      process.stdout.write(`W4 ${impl} ${mode}… `);
      const line = execFileSync(process.execPath, ["--expose-gc", join(here, "node/w4.mjs"), impl, mode, String(cfg.traceEdits), String(cfg.reopens)], {
        cwd: root,
        env: { ...process.env, IBEX_TRACE: trace },
        maxBuffer: 1 << 20,
      }).toString();
      const r = JSON.parse(line.trim().split("\n").pop());
      if (!r.ok) throw new Error(`W4 ${impl} ${mode}: the final text differs from the trace's`);
      out.rows.push(r);
      console.log(`${(r.applyMs / 1000).toFixed(1)} s, reopen ${fmt(median(r.reopen))}`);
    }
  }
  return out;
}

/** Issue 15's Node measure (node/edits_vs_once.mjs): opening an item of
 * 20,000 one-character commits against the same text written once. */
function editsVsOnce() {
  process.stdout.write("W4 20k edits vs once… ");
  const line = execFileSync(process.execPath, ["--expose-gc", join(here, "node/edits_vs_once.mjs"), "20000", String(Math.max(5, cfg.reopens))], { cwd: root, maxBuffer: 1 << 20 }).toString();
  const r = JSON.parse(line.trim().split("\n").pop());
  console.log(`${fmt(median(r.manyMs))} vs ${fmt(median(r.onceMs))}`);
  return r;
}

/** W5 reconciliation cost: the core's sync protocol between a client and
 * a server in one process (rust/core/examples/reconcile.rs), frames
 * encoded, for random and one-sided divergence and for nothing new. */
function reconcile() {
  process.stdout.write("W5 reconciliation… ");
  const out = execFileSync("cargo", ["run", "-q", ...(quick ? [] : ["--release"]), "-p", "ibex-core", "--example", "reconcile", "--", ...cfg.reconcileCases], { cwd: root, maxBuffer: 1 << 20 }).toString();
  console.log("done");
  return out.trim().split("\n").map((l) => JSON.parse(l));
}

/** W10: ibex-server under load, from a separate load-generator process
 * speaking the real protocol (rust/server/examples/load.rs): 1,000 clients
 * (100 writers × 5 edits/s), 10,000 idle connections, the same load with
 * an attacker beside it, and 100 writers to one repository who then all
 * hold the union. */
async function w10() {
  const prof = quick ? "debug" : "release";
  const bin = join(targetDir, prof, "ibex-server");
  const load = join(targetDir, prof, "examples", "load");
  if (!existsSync(bin) || !existsSync(load)) return { skipped: `target/${prof}/ibex-server or examples/load is not built` };
  const dataDir = mkdtempSync(join(tmpdir(), "ibex-w10-"));
  const p = port + 500;
  const flags = ["--max-connections-per-ip", "30000", "--anonymous-per-ip-per-minute", "1000000", "--connections-per-ip-per-minute", "1000000", "--rounds-per-minute", "1000000"];
  const server = spawn(bin, ["--port", String(p), "--host", "127.0.0.1", "--data", dataDir, ...flags], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, RUST_LOG: "error" } });
  const c = cfg.w10;
  const addr = `127.0.0.1:${p}`;
  const run = (args) => {
    const r = JSON.parse(execFileSync(load, [...args, "--addr", addr, "--pid", String(server.pid)], { maxBuffer: 1 << 20 }).toString().trim().split("\n").pop());
    // The load generator reports its own failures (a client that could not
    // connect): stop with them rather than report a number that is not one.
    if (r.error) throw new Error(`W10 ${args[0]}: ${r.error}`);
    return r;
  };
  const out = {};
  try {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`http://${addr}/healthz`)).ok) break;
      } catch {}
      if (i > 100) throw new Error("ibex-server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
    const relay = ["relay", "--repos", String(c.repos), "--per-repo", String(c.perRepo), "--rate", "5", "--seconds", String(c.seconds)];
    process.stdout.write("W10 relay… ");
    out.baseline = run(relay);
    console.log(`p95 ${out.baseline.p95} ms`);
    for (const kind of ["slow-reader", "splices"]) {
      process.stdout.write(`W10 relay with a ${kind} attacker… `);
      const attacker = spawn(load, ["attack", "--kind", kind, "--addr", addr, "--commits", quick ? "1000" : "12000"], { stdio: "ignore" });
      await new Promise((r) => setTimeout(r, quick ? 1_000 : 8_000));
      out[kind] = run(relay);
      attacker.kill();
      console.log(`p95 ${out[kind].p95} ms`);
    }
    process.stdout.write("W10 idle connections… ");
    out.idle = run(["idle", "--connections", String(c.idle)]);
    console.log(`${mb(out.idle.serverRss)}`);
    process.stdout.write("W10 union… ");
    out.union = run(["union", "--clients", String(c.unionClients), "--rate", "1", "--seconds", String(c.unionSeconds)]);
    console.log(`converged in ${out.union.convergeSeconds} s`);
  } catch (e) {
    // Reported as a failed workload; the other workloads' numbers stand.
    console.log(`failed: ${e.message}`);
    return { error: e.message };
  } finally {
    server.kill();
  }
  return out;
}

/** W11: several ibex-server instances on one PostgreSQL
 * (rust/server/examples/w11.rs starts its own cluster, the servers and the
 * clients, and prints one JSON line): relay latency on one server (files,
 * PostgreSQL) and across three; acknowledged commits/s on 1 and 3
 * instances with the CPU of each side; a new instance serving a
 * 100k-commit repository. */
function w11() {
  const prof = quick ? "debug" : "release";
  const bin = join(targetDir, prof, "ibex-server");
  const w11bin = join(targetDir, prof, "examples", "w11");
  if (!existsSync(bin) || !existsSync(w11bin)) return { skipped: `target/${prof}/ibex-server or examples/w11 is not built` };
  process.stdout.write("W11 several servers on PostgreSQL… ");
  try {
    const out = execFileSync(w11bin, ["--server", bin, ...(quick ? ["--quick"] : [])], { cwd: root, maxBuffer: 1 << 20, stdio: ["ignore", "pipe", "inherit"] }).toString();
    const r = JSON.parse(out.trim().split("\n").pop());
    if (r.error) throw new Error(r.error);
    console.log(`cross-instance p95 ${r.relayPg3.p95} ms`);
    return r;
  } catch (e) {
    console.log(`failed: ${e.message}`);
    return { error: e.message };
  }
}

/** W3 cold start and W8 memory. Per implementation and size, one browser
 * context (its own OPFS and IndexedDB): a setup page persists N items, then
 * each run loads a blank page, pauses (so the last run's worker and file
 * handles are gone), and loads the measured page. After the last run the
 * runner forces a GC and reads the main thread's heap over CDP (W8), less
 * the heap of the same page that loaded nothing. */
async function w3(browser) {
  const out = {};
  const COLD_IMPLS = ["ibex", "tinybase", "dexie"];
  const url = (q) => `http://127.0.0.1:${port}/bench/pages/w3.html?${q}`;
  const result = async (p) => {
    await p.waitForFunction(() => window.w3 !== undefined, null, { timeout: 15 * 60_000 });
    const r = await p.evaluate(() => window.w3);
    if (r.error) throw new Error(r.error);
    return r;
  };
  const heap = async (cdp) => {
    await cdp.send("HeapProfiler.collectGarbage");
    return (await cdp.send("Runtime.getHeapUsage")).usedSize;
  };
  for (const n of cfg.coldSizes) {
    out[n] = {};
    // At a million items TinyBase (one JSON document in OPFS) is left out:
    // the issue asks for Ibex and Dexie there, and it would double the time.
    for (const impl of n >= 1_000_000 ? ["ibex", "dexie"] : COLD_IMPLS) {
      process.stdout.write(`W3/W8 ${impl} ${n.toLocaleString("en")}… `);
      const ctx = await browser.newContext();
      const p = await ctx.newPage();
      const cdp = await ctx.newCDPSession(p);
      const row = { first: [], all: [], longest: [], setupMs: 0 };
      try {
        await p.goto(url(`setup=${impl}&n=${n}`));
        row.setupMs = (await result(p)).setupMs;
        for (let r = 0; r < cfg.coldRuns; r++) {
          await p.goto("about:blank");
          await new Promise((res) => setTimeout(res, 300));
          // IBEX_W3_PROFILE=<file>: the last Ibex load at the largest size
          // is CPU-profiled (bench/longest_task.mjs reads the file).
          const profile = process.env.IBEX_W3_PROFILE && impl === "ibex" && n === Math.max(...cfg.coldSizes) && r === cfg.coldRuns - 1;
          if (profile) {
            await cdp.send("Profiler.enable");
            await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
            await cdp.send("Profiler.start");
          }
          await p.goto(url(`impl=${impl}&n=${n}`));
          const m = await result(p);
          if (profile) writeFileSync(process.env.IBEX_W3_PROFILE, JSON.stringify((await cdp.send("Profiler.stop")).profile));
          if (m.count !== n) throw new Error(`${impl} loaded ${m.count} of ${n} items`);
          row.first.push(m.first);
          if (m.phases) (row.phases ??= []).push(m.phases);
          row.all.push(m.all);
          row.longest.push(m.longest);
          row.engineMemoryBytes = m.engineMemoryBytes;
        }
        const loaded = await heap(cdp);
        await p.goto("about:blank");
        await p.goto(url(`impl=none&n=${n}`));
        await result(p);
        row.heapBytes = loaded - (await heap(cdp));
        console.log(`first ${fmt(median(row.first))}, all ${fmt(median(row.all))}`);
      } catch (e) {
        // A peer that cannot hold this size is a result, not a crash.
        row.error = String(e.message ?? e).split("\n")[0].slice(0, 200);
        console.log(`failed: ${row.error}`);
      }
      out[n][impl] = row;
      await ctx.close();
    }
  }
  return out;
}

async function syncPage(ctx) {
  const p = await ctx.newPage();
  await p.goto(`http://127.0.0.1:${port}/bench/pages/sync.html`);
  await p.waitForFunction(() => window.benchW57Ready === true);
  return p;
}

/** Times one edit made in page `a` until it is visible in page `b`. */
async function editLatency(a, b, repo, key) {
  const seen = b.evaluate((args) => window.benchWaitFor(args.repo, args.key), { repo, key });
  const t0 = await a.evaluate((args) => window.benchWrite(args.repo, args.key), { repo, key });
  return (await seen) - t0;
}

/** W5: two browsers (contexts) syncing through ibex-server on 127.0.0.1. */
async function w5(browser) {
  process.stdout.write("W5 ibex… ");
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await syncPage(ca), await syncPage(cb)];
  const repo = "/data/w5";
  await a.evaluate((r) => window.benchOpen("w5", r, true), repo);
  await b.evaluate((r) => window.benchOpen("w5", r, true), repo);
  const lat = [];
  for (let i = 0; i < cfg.edits; i++) lat.push(await editLatency(a, b, repo, `e${i}`));
  await ca.close();
  await cb.close();
  console.log("done");
  return { lat };
}

/** W7: two tabs of one database (one context): write → visible, and the
 * leader hand-over as BENCHMARKS.md defines it — from closing the leader
 * tab to the first write made in the remaining tab being durable in the
 * engine that tab now runs (not merely its `status.leader` flipping, which
 * happens before the new worker has loaded the WASM or holds the OPFS
 * files; that time is kept beside it, for where the time goes). Each
 * hand-over is then checked: the remaining tab closes too, and a fresh
 * tab must read the write back from storage. */
async function w7(browser) {
  process.stdout.write("W7 ibex… ");
  const lat = [];
  const handoverDurable = [];
  const handoverLeader = [];
  let earlyFlush = 0;
  for (let h = 0; h < cfg.handovers; h++) {
    const ctx = await browser.newContext();
    const repo = "/data/w7";
    const pages = [await syncPage(ctx), await syncPage(ctx)];
    for (const p of pages) await p.evaluate((r) => window.benchOpen("w7", r, false), repo);
    const leads = await Promise.all(pages.map((p) => p.evaluate(() => window.benchLeader())));
    if (leads.filter(Boolean).length !== 1) throw new Error(`W7: ${leads.filter(Boolean).length} tabs lead, expected 1`);
    const [leader, follower] = leads[0] ? pages : [pages[1], pages[0]];
    const n = h === 0 ? cfg.edits : 5;
    for (let i = 0; i < n; i++) lat.push(await editLatency(i % 2 ? leader : follower, i % 2 ? follower : leader, repo, `t${h}-${i}`));
    const path = `${repo}/t${h}-0`;
    const value = 1_000 + h;
    const tookLead = follower.evaluate(() => window.benchWaitLeader());
    const t0 = await leader.evaluate(() => window.benchNow());
    await leader.close();
    const w = await follower.evaluate((a) => window.benchHandoverWrite(a.path, a.value), { path, value });
    if (!w.leader) throw new Error("W7: the remaining tab's write was durable but the tab does not lead");
    handoverDurable.push(w.durable - t0);
    handoverLeader.push((await tookLead) - t0);
    if (w.early) earlyFlush++;
    await follower.close();
    const check = await syncPage(ctx);
    await check.evaluate((r) => window.benchOpen("w7", r, false), repo);
    const got = await check.evaluate((p) => window.benchCount(p), path);
    if (got !== value) throw new Error(`W7: the hand-over write was reported durable but a fresh tab reads count=${got}, not ${value}`);
    await ctx.close();
  }
  console.log(`hand-over ${fmt(median(handoverDurable))} (leader flag ${fmt(median(handoverLeader))})`);
  return { lat, handoverDurable, handoverLeader, earlyFlush };
}

function report(r) {
  const m = r.machine;
  const lines = [];
  // Every target/met pair comes from targets.mjs, evaluated on `r`.
  const V = evaluate(r);
  const tm = (...ids) => `${targetCell(V, ids)} | ${metCell(V, ids, { bold: true })}`;
  const none = "— | —";
  const hasTarget = (id) => V.has(id) || TARGETS.some((t) => t.id === id);
  lines.push(`# Benchmark results${r.quick ? " (quick mode: small sizes, one run — not for quoting)" : ""}`, "");
  lines.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB · Chromium ${m.chromium} headless (OPFS) · Node ${m.node} · ${r.date.slice(0, 10)}`, "");
  const partial = r.full ? ` The full run of ${r.full.date?.slice(0, 10)}, with ${r.remeasured.map((w) => w.toUpperCase()).join(", ")} measured again with newer code (\`node bench/run.mjs --only ${r.remeasured.join(",")}\`) on ${r.date?.slice(0, 10)}; the other workloads are from the full run.` : "";
  lines.push(`Command: \`npm run bench\`${r.quick ? " --quick" : ""}.${partial} ${r.config.runs} run(s) per operation (${r.config.bigRuns} for instance/open/read-all); median and p95 over runs; ratios compare medians measured in this same run. Sub-millisecond operations repeat inside one sample (browser timers are coarse) and report the mean per operation.`, "");
  lines.push("## W1 — GoatDB's 13 operations (browser, durable)", "");
  const tbQueries =
    r.w1Method?.tinybase === "queries-module"
      ? "each sample defines a query, reads its results and drops it: Ibex `db.query` (a live query), TinyBase's queries module (`setQueryDefinition` with `where`, `getResultRowIds` / `getResultSortedRowIds`, `delQueryDefinition`), Dexie's `filter`. TinyBase stores `tags` as an array cell (TinyBase 8+)."
      : "TinyBase's queries here filtered row copies by hand (this run predates the use of its queries module).";
  lines.push(`Same schema (\`title: string, count: number, tags: set\`). Durable = after the storage flush: Ibex \`flush()\` (OPFS \`flush()\`), TinyBase \`save()\` with its OPFS persister (rewrites the whole store), Dexie's committed IndexedDB transaction. Queries run over 100 items, as in GoatDB's suite; ${tbQueries} GoatDB here: GoatDB ${GOAT.source.goatdb}, its own suite on this machine kind (\`bench/data/goatdb-measured.json\`), mean of its samples; its ${GOAT.w1.items.toLocaleString("en")}-item rows apply only to a run with as many items. Dexie reads from IndexedDB asynchronously; its "open" is ready-to-query, not loaded into memory.`, "");
  lines.push("| operation | Ibex median (p95) | TinyBase + OPFS | Dexie | GoatDB here (mean) | Ibex / TinyBase | Ibex / GoatDB | target | met |");
  lines.push("|---|---|---|---|---|---|---|---|---|");
  for (const op of W1_OPS) {
    const cell = (impl) => {
      const xs = r.w1[impl]?.[op];
      return xs?.length ? `${fmt(median(xs))} (${fmt(p95(xs))})` : "—";
    };
    const med = (impl) => (r.w1[impl]?.[op]?.length ? median(r.w1[impl][op]) : undefined);
    const ours = med("ibex");
    const goat = goatW1(r, op);
    lines.push(`| ${LABEL[op]} | ${cell("ibex")} | ${cell("tinybase")} | ${cell("dexie")} | ${goat === undefined ? "—" : fmt(goat)} | ${ratio(ours, med("tinybase"))} | ${ratio(ours, goat)} | ${tm(`W1.${op}`)} |`);
  }
  lines.push("");
  if (r.w2) {
    const l = r.w2.lat;
    lines.push("## W2 — reactive loop (Ibex)", "");
    lines.push(`100 live queries over ${r.config.big.toLocaleString("en")} items; each write dirties ${r.w2.affectedPerWrite.toFixed(0)} of them; ${l.length} writes. Latency from \`item.set\` to the last affected subscriber.`, "");
    lines.push("| measure | Ibex | target | met |", "|---|---|---|---|");
    lines.push(`| write → all affected subscribers notified, p50 | ${fmt(median(l))} | ${tm("W2.p50")} |`);
    lines.push(`| … p95 | ${fmt(p95(l))} | ${tm("W2.p95")} |`);
    lines.push("| re-renders of unaffected components | not measured here: asserted (0) by the demo's Playwright render-count test | 0 | — |", "");
    lines.push("Peers: not measured for W2 yet (TinyBase's queries module, as in W1, is the one to add).", "");
  }
  if (r.w3) {
    const cell = (row, k) => (row?.error ? "failed" : row?.[k]?.length ? `${fmt(median(row[k]))} (${fmt(p95(row[k]))})` : "—");
    lines.push("## W3 — cold start (browser, OPFS / IndexedDB)", "");
    lines.push(`A page load with N items already persisted (same schema as W1). Times count from navigation start, so they include loading the code and compiling the WASM module. First = 50 rows of a query are available; all = every item is in memory (Ibex's mirror, TinyBase's store, Dexie's rows read into an array; Dexie's first result does not need them loaded). Longest task = the longest main-thread task (the Long Tasks API reports only tasks over 50 ms, so 0 means none). ${r.config.coldRuns} load(s) per cell, median (p95).`, "");
    lines.push("| items | measure | Ibex | TinyBase + OPFS | Dexie | Ibex / TinyBase | Ibex / Dexie | target | met |", "|---|---|---|---|---|---|---|---|---|");
    for (const [n, rows] of Object.entries(r.w3)) {
      const med = (impl, k) => (rows[impl]?.[k]?.length && !rows[impl].error ? median(rows[impl][k]) : undefined);
      const size = Number(n).toLocaleString("en");
      const first = med("ibex", "first");
      lines.push(`| ${size} | first 50 rows | ${cell(rows.ibex, "first")} | ${cell(rows.tinybase, "first")} | ${cell(rows.dexie, "first")} | ${ratio(first, med("tinybase", "first"))} | ${ratio(first, med("dexie", "first"))} | ${hasTarget(`W3.first@${n}`) ? tm(`W3.first@${n}`) : none} |`);
      const all = med("ibex", "all");
      lines.push(`| ${size} | all loaded | ${cell(rows.ibex, "all")} | ${cell(rows.tinybase, "all")} | ${cell(rows.dexie, "all")} | ${ratio(all, med("tinybase", "all"))} | ${ratio(all, med("dexie", "all"))} | ${hasTarget(`W3.all@${n}`) ? tm(`W3.all@${n}`) : none} |`);
      const maxCell = (row) => (row?.error ? "failed" : !row?.longest?.length ? "—" : Math.max(...row.longest) === 0 ? "none over 50 ms" : fmt(Math.max(...row.longest)));
      lines.push(`| ${size} | longest main-thread task (max) | ${maxCell(rows.ibex)} | ${maxCell(rows.tinybase)} | ${maxCell(rows.dexie)} | — | — | ${tm(`W3.longest@${n}`)} |`);
      const setup = (impl) => (rows[impl]?.setupMs ? fmt(rows[impl].setupMs) : "—");
      lines.push(`| ${size} | (setup: write N items, durable) | ${setup("ibex")} | ${setup("tinybase")} | ${setup("dexie")} | — | — | — | — |`);
    }
    for (const [n, rows] of Object.entries(r.w3)) {
      const ph = rows.ibex?.phases;
      if (!ph?.length || rows.ibex.error) continue;
      const at = (k) => fmt(median(ph.map((p) => p[k])));
      lines.push("", `Where Ibex's ${Number(n).toLocaleString("en")}-item load spends its time (medians, from navigation start): the page's script starts at ${at("script")} (HTML and module fetch), the SDK's code is loaded at ${at("code")}, \`IbexDB.open\` resolves at ${at("ready")} (worker started, WebAssembly module compiled, engine created), then the repository opens in the worker from its checkpoint and its heads cross to the main thread: first 50 rows at ${fmt(median(rows.ibex.first))}, all loaded at ${fmt(median(rows.ibex.all))}.`);
    }
    if (!r.quick && !r.w3["1000000"]) lines.push("", "Not run: 1,000,000 items (this results file is from a run before that size was added).");
    if (r.w3["1000000"]) lines.push("", "At 1,000,000 items only Ibex and Dexie are run (TinyBase keeps its store as one JSON document in OPFS; it took a second per load at 100,000 items).");
    const failures = Object.entries(r.w3).flatMap(([n, rows]) => Object.entries(rows).filter(([, row]) => row.error).map(([impl, row]) => `${impl} at ${Number(n).toLocaleString("en")}: ${row.error}`));
    if (failures.length) lines.push("", `Failed: ${failures.join("; ")}.`);
    lines.push("");
    lines.push("## W8 — memory with N items loaded (browser)", "");
    lines.push("Main-thread JS heap after a forced GC (CDP `Runtime.getHeapUsage`), less the heap of the same page that loaded nothing; for Ibex plus the engine's WebAssembly memory in its worker (`db.stats()`). Not included: the worker's own JS heap (glue code; the data lives in WASM memory) and Dexie (its rows stay in IndexedDB, outside the page).", "");
    lines.push("| items | Ibex JS heap (mirror) | Ibex WASM memory | Ibex total | TinyBase JS heap | Ibex / TinyBase | target | met |", "|---|---|---|---|---|---|---|---|");
    for (const [n, rows] of Object.entries(r.w3)) {
      if (Number(n) > 100_000) continue;
      const ib = rows.ibex ?? {};
      const total = ib.error || ib.heapBytes === undefined ? undefined : ib.heapBytes + ib.engineMemoryBytes;
      const tb = rows.tinybase?.error ? undefined : rows.tinybase?.heapBytes;
      lines.push(`| ${Number(n).toLocaleString("en")} | ${mb(ib.heapBytes)} | ${mb(ib.engineMemoryBytes)} | ${mb(total)} | ${mb(tb)} | ${ratio(total, tb)} | ${hasTarget(`W8.total@${n}`) ? tm(`W8.total@${n}`) : none} |`);
    }
    lines.push("");
  }
  if (r.w5) {
    const l = r.w5.lat;
    lines.push("## W5 — sync between two browsers through ibex-server (127.0.0.1)", "");
    lines.push(`Two browser contexts (separate OPFS and engines) synced through ibex-server; ${l.length} edits; time from \`db.create\` in A to the item appearing in B's mirror.`, "");
    lines.push("| measure | Ibex | GoatDB here | target | met |", "|---|---|---|---|---|");
    lines.push(`| one edit A → B, p50 | ${fmt(median(l))} | ${fmt(GOAT.w5.p50)} | ${tm("W5.p50")} |`);
    lines.push(`| … p95 | ${fmt(p95(l))} | ${fmt(GOAT.w5.p95)} | ${none} |`);
    lines.push("| idle connection | not measured here: no frames while idle is asserted by `rust/server/tests` | polls every 300–1500 ms | ~0 bytes | — |", "");
    lines.push(`GoatDB here: ${GOAT.w5.what} (\`bench/data/goatdb-measured.json\`).`, "");
    lines.push("Reconciliation bytes and round trips: see W5 — reconciliation cost below.", "");
  }
  if (r.w7) {
    const l = r.w7.lat;
    lines.push("## W7 — tabs", "");
    const hd = r.w7.handoverDurable ?? [];
    // Runs before the durable measure timed only the leader flag, as
    // `handover`: shown as that, never as the hand-over.
    const hl = r.w7.handoverLeader ?? r.w7.handover ?? [];
    const timed = hd.length ? `${hd.length} hand-over(s)` : `${hl.length} hand-overs, timed only until the remaining tab's leader flag flipped (this run predates the measure below, so the hand-over itself is not measured)`;
    lines.push(`Two tabs of one database (one leads, the other follows over a BroadcastChannel); ${l.length} edits alternating direction; ${timed}. A hand-over: the leader tab closes; at once the remaining tab sets a field and calls \`flush()\`; the time runs until that write is durable in the engine the remaining tab now runs (its worker started, the repository reopened from OPFS, the write applied and flushed). Each hand-over is then checked: the remaining tab closes too and a fresh tab reads the write back.`, "");
    lines.push("| measure | Ibex | target | met |", "|---|---|---|---|");
    lines.push(`| write in tab A → visible in tab B, p50 | ${fmt(median(l))} | ${tm("W7.p50")} |`);
    lines.push(`| … p95 | ${fmt(p95(l))} | ${none} |`);
    lines.push(`| hand-over: leader tab closed → first write in the new leader durable, median (max) | ${hd.length ? `${fmt(median(hd))} (${fmt(Math.max(...hd))})` : "not measured"} | ${tm("W7.handover")} |`);
    lines.push(`| … of which until the remaining tab's \`status.leader\` flips, median | ${hl.length ? fmt(median(hl)) : "not measured"} | ${none} |`, "");
    if (r.w7.earlyFlush) lines.push(`In ${r.w7.earlyFlush} of ${hd.length} hand-overs the first \`flush()\` resolved before the new engine had applied the write (the SDK re-sends unanswered requests before unacknowledged batches after a hand-over); the time above is then the second \`flush()\`, which did cover it.`, "");
    lines.push("Lost writes and NoModificationAllowedError across 50 reloads × 4 tabs: none (asserted by `playwright/tests/multitab.spec.ts`).", "");
  }
  if (r.w9) {
    lines.push("## W9 — size of the WASM module", "");
    lines.push("| module | raw | gzip -9 |", "|---|---|---|");
    for (const [k, v] of Object.entries(r.w9)) lines.push(`| ${k} | ${(v.raw / 1024).toFixed(0)} KB | ${(v.gzip / 1024).toFixed(0)} KB |`);
    lines.push("", `Target: Ibex ${targetCell(V, ["W9.gzip"])} gzip — met: ${metCell(V, ["W9.gzip"], { bold: true })}.`, "");
    const wh = r.w9where;
    if (wh) {
      const pct = (x) => `${((100 * x) / wh.codeBytes).toFixed(1)}%`;
      lines.push(`Where Ibex's bytes go (\`bench/wasm_size.mjs\`: function sizes by crate, or by module for core/alloc, in \`${wh.file}\` before wasm-bindgen and wasm-opt): ${(wh.codeBytes / 1024).toFixed(0)} KB of code in ${wh.functions.toLocaleString("en")} functions and ${(wh.dataBytes / 1024).toFixed(0)} KB of data.`, "");
      lines.push("| code of | bytes | share |", "|---|---|---|");
      for (const t of wh.top) lines.push(`| ${t.what} | ${(t.bytes / 1024).toFixed(0)} KB | ${pct(t.bytes)} |`);
      lines.push("");
    }
  }
  if (r.w4?.skipped) lines.push("## W4 — skipped", "", r.w4.skipped, "");
  else if (r.w4) {
    const rows = r.w4.rows;
    const get = (impl, mode) => rows.find((x) => x.impl === impl && x.mode === mode);
    lines.push("## W4 — history stress: the B4 editing trace (Node)", "");
    lines.push(`${rows[0].edits.toLocaleString("en")} single-character edits of the automerge paper applied to one text (Ibex: \`item.splice\` on a \`text\` field, log in fsync'd files; Loro: LoroText; Automerge: \`splice\`), one commit per edit and one per 1,000 edits; the final text is checked against the trace. Bytes = what is kept: Ibex's log files (every commit signed and content-addressed), Loro's and Automerge's saved snapshots. Reopen = open that and read the text, in a fresh process; memory = growth of the process's resident memory from before the reopen. Apply runs once (it is the long part); ${r.config.reopens} reopen(s), median.`, "");
    lines.push("| mode | measure | Ibex | Loro | Automerge | Ibex / Loro | target | met |", "|---|---|---|---|---|---|---|---|");
    for (const mode of ["edit", "batch"]) {
      const [i, l, a] = ["ibex", "loro", "automerge"].map((impl) => get(impl, mode));
      if (!i || !l || !a) continue;
      const label = mode === "edit" ? "commit per edit" : "commit per 1k edits";
      // BENCHMARKS.md sets W4's targets for one commit per edit only.
      const t = (id) => (mode === "edit" ? tm(id) : none);
      const rate = (x) => `${Math.round(x.edits / (x.applyMs / 1000)).toLocaleString("en")} edits/s (${x.commits.toLocaleString("en")} commits in ${(x.applyMs / 1000).toFixed(1)} s)`;
      lines.push(`| ${label} | apply | ${rate(i)} | ${rate(l)} | ${rate(a)} | ${ratio(i.applyMs, l.applyMs)} time | ${t("W4.rate")} |`);
      lines.push(`| ${label} | bytes kept | ${mb(i.bytes)} | ${mb(l.bytes)} | ${mb(a.bytes)} | ${ratio(i.bytes, l.bytes)} | ${t("W4.bytes")} |`);
      const ri = median(i.reopen);
      const rl = median(l.reopen);
      lines.push(`| ${label} | reopen | ${fmt(ri)} | ${fmt(rl)} | ${fmt(median(a.reopen))} | ${ratio(ri, rl)} | ${t("W4.reopen")} |`);
      lines.push(`| ${label} | memory after reopen | ${mb(Math.max(0, i.memory))} | ${mb(Math.max(0, l.memory))} | ${mb(Math.max(0, a.memory))} | — | ${t("W4.memory")} |`);
    }
    if (r.w4ratio) {
      const x = r.w4ratio;
      lines.push("", `Node, the same text two ways (\`bench/node/edits_vs_once.mjs\`): an item that took ${x.edits.toLocaleString("en")} one-character edits (one commit each) opens in ${fmt(median(x.manyMs))}, the same text written once in ${fmt(median(x.onceMs))}: ${x.ratio.toFixed(2)}× (target ≤ 1.5×; median of ${x.manyMs.length} opens each, from the checkpoint written at close).`);
    }
    lines.push("", "Ibex keeps every edit as a signed commit, stored compactly (about 100 bytes for a one-character edit, 64 of them the signature), plus a full value where a delta chain reaches what a 64 MiB rebuild allows; Loro and Automerge compress their operation history. Reopening reads the checkpoint's head (the item and its text), not the history and not the checkpoint's table of commits (read when history is first asked for).", "");
  }
  if (r.w5reconcile && !r.w5reconcile.every((x) => typeof x.mode === "string")) lines.push("## W5 — reconciliation cost", "", "Not in this results file: it predates protocol v2's reconciliation report (round trips, overhead).", "");
  else if (r.w5reconcile) {
    lines.push("## W5 — reconciliation cost (sync protocol v2, Rust)", "");
    lines.push("A client and a server hold the same N commits, then diverge: *random* = each writes d/2 new commits (commit ids are hashes, so differences are spread at random), *one-sided* = only the server writes d (a client that was away), *nothing* = a reconnect with nothing new. They reconcile with the protocol of `rust/core/src/sync/` (digest; on a difference a 256-byte strata estimate, then rateless-IBLT cells sized by it, then the commits each lacks and acknowledgements), every frame encoded and decoded, in one process (`rust/core/examples/reconcile.rs`). Overhead = every byte that is not a commit. Round trips = times the client waits for the server before it holds the union.", "");
    lines.push("| commits | divergence | differing | round trips | overhead | commit bytes | time | target | met |", "|---|---|---|---|---|---|---|---|---|");
    const kb = (b) => `${(b / 1024).toFixed(1)} KB`;
    for (const x of r.w5reconcile) {
      const k = `${x.commits}/${x.mode}`;
      // BENCHMARKS.md: nothing new → 1 round trip, ≤ 200 B; 100k commits /
      // 1% → ≤ 60 KB, ≤ 2 round trips; 1M / 0.1% must run (no bound).
      const ids = x.mode === "nothing" ? [`W5.reconnect.bytes@${k}`, `W5.reconnect.roundTrips@${k}`] : x.commits === 100_000 ? [`W5.reconcile.overhead@${k}`, `W5.reconcile.roundTrips@${k}`] : [];
      lines.push(`| ${x.commits.toLocaleString("en")} | ${x.mode} | ${x.divergent.toLocaleString("en")} | ${x.roundTrips} | ${x.overheadBytes < 1024 ? `${x.overheadBytes} B` : kb(x.overheadBytes)} | ${kb(x.commitBytes)} | ${fmt(x.ms)} | ${ids.length ? tm(...ids) : none} |`);
    }
    lines.push("", "The first version sent a Bloom filter of every commit per round: 590 KB of filters in 5 rounds for 1% of 100k commits. Why rateless IBLTs rather than range-based reconciliation is in `rust/core/src/sync/mod.rs`.", "");
  }
  if (r.w10?.skipped) lines.push("## W10 — skipped", "", r.w10.skipped, "");
  else if (r.w10?.error) lines.push("## W10 — failed", "", `The run stopped: ${r.w10.error}`, "");
  else if (r.w10) {
    const w = r.w10;
    const b = w.baseline;
    const pct = (x) => `${(x * 100).toFixed(0)}% of a core`;
    lines.push("## W10 — the server under load (real binary, 127.0.0.1)", "");
    lines.push(`A release \`ibex-server\` and, in another process, a load generator speaking the real protocol through the shared client session (\`rust/server/examples/load.rs\`; every client verifies every commit it receives, as the browser engine does). Relay: ${b.clients.toLocaleString("en")} clients in ${b.writers} repositories, one writer per repository at ${b.rate} edits/s and the others reading, for ${b.seconds} s; latency = the writer's send to each reader's receipt (one clock). The same load again with an attacker process beside it (both on the same 2 cores as the server). Idle: authenticated connections held open. Union: ${w.union?.clients} clients all writing 1 edit/s to one repository for ${w.union?.seconds} s, then everyone syncs.`, "");
    lines.push("| measure | Ibex | target | met |", "|---|---|---|---|");
    lines.push(`| relay p50 / p95 / p99 | ${b.p50} / ${b.p95} / ${b.p99} ms (${b.deliveries.toLocaleString("en")} deliveries) | ${tm("W10.p95")} |`);
    lines.push(`| lost commits (relay, and relay beside each attacker) | ${b.lost} of ${b.written.toLocaleString("en")}${["slow-reader", "splices"].filter((k) => w[k]).map((k) => `; ${w[k].lost} of ${w[k].written?.toLocaleString("en")} beside ${k}`).join("")} | ${tm("W10.lost")} |`);
    lines.push(`| server RSS (max) / CPU | ${mb(b.serverRssMax)} / ${pct(b.serverCpu)} | — | — |`);
    for (const kind of ["slow-reader", "splices"]) {
      const a = w[kind];
      if (!a) continue;
      const what = kind === "slow-reader" ? "a reader that asks for a 12 MB repository again and again and never reads" : "commits of 320,000 splices with bad signatures, resent as fast as it can";
      lines.push(`| victims' p95 with ${what} | ${a.p95} ms (${ratio(a.p95, b.p95)} baseline), lost ${a.lost}, RSS ${mb(a.serverRssMax)}, CPU ${pct(a.serverCpu)} | ${tm(`W10.victims@${kind}`)} |`);
    }
    lines.push(`| ${w.idle.connections.toLocaleString("en")} idle authenticated connections: server RSS | ${mb(w.idle.serverRss)} (${mb(w.idle.serverRssBefore)} before; ${w.idle.failed} failed) | ${tm("W10.idle")} |`);
    const u = w.union;
    lines.push(`| union: ${u.clients} writers × ${u.seconds} s, then all sync | ${u.written.toLocaleString("en")} commits; ${u.clientsShort} clients short, ${u.distinctStates} distinct state(s); converged in ${u.convergeSeconds} s; RSS ${mb(u.serverRssMax)}, CPU ${pct(u.serverCpu)} | ${tm("W10.union")} |`, "");
  }
  if (r.w11?.skipped) lines.push("## W11 — skipped", "", r.w11.skipped, "");
  else if (r.w11?.error) lines.push("## W11 — failed", "", `The run stopped: ${r.w11.error}`, "");
  else if (r.w11) {
    const w = r.w11;
    const cores = (x) => `${x.toFixed(2)} cores`;
    lines.push("## W11 — several servers on one PostgreSQL (real binaries, 127.0.0.1)", "");
    lines.push("`rust/server/examples/w11.rs` starts a private PostgreSQL 15 cluster, release `ibex-server` processes and clients speaking the real protocol (every client verifies every commit), all on the same 2 cores. Relay: 10 repositories, each with one writer at 5 edits/s and three readers; latency = the writer's send to each reader's receipt (one clock). With three instances every reader is on another instance than its writer, so each commit goes writer → instance → PostgreSQL (insert, commit, NOTIFY) → the other instance (LISTEN, read rows by seq) → reader. Throughput: 24 clients, one repository each, writing batches of 8 and waiting for the acknowledgements (acknowledged = the transaction committed); CPU in cores used by the servers, PostgreSQL (postmaster and backends) and the client process. Cold: a repository stored in PostgreSQL, a new instance started, then a client that already holds every commit syncs (the instance opens the repository from its rows and reconciles) and a new client downloads it all.", "");
    lines.push("| measure | Ibex | target | met |", "|---|---|---|---|");
    const relay = (label, x) => `| relay p50 / p95 / p99, ${label} | ${x.p50} / ${x.p95} / ${x.p99} ms (${x.deliveries.toLocaleString("en")} of ${x.expected.toLocaleString("en")} deliveries) |`;
    lines.push(`${relay("1 server on files", w.relayFiles)} — | — |`);
    lines.push(`${relay("1 server on PostgreSQL", w.relayPg1)} — | — |`);
    lines.push(`${relay("3 servers on PostgreSQL, cross-instance", w.relayPg3)} ${tm("W11.p95", "W11.lost")} |`);
    for (const n of [1, 3]) {
      const t = w[`throughput${n}`];
      lines.push(`| acknowledged commits/s, ${n} server${n > 1 ? "s" : ""} on PostgreSQL | ${t.commitsPerSecond.toLocaleString("en")} (servers ${cores(t.serverCpu)}, PostgreSQL ${cores(t.postgresCpu)}, clients ${cores(t.clientCpu)}) | — | — |`);
    }
    const c = w.cold;
    lines.push(`| a new instance serving a ${c.commits.toLocaleString("en")}-commit repository: ready / first sync of an up-to-date client / full download by a new client | ${fmt(c.readyMs)} / ${fmt(c.firstSyncMs)} / ${fmt(c.downloadMs)} | — | — |`, "");
  }
  if (r.w6) {
    lines.push("## W6 — conflicts: W = 20·√N concurrent writers on one item (Node)", "");
    lines.push(`Each writer starts from the same base and, without seeing the others, sets the same field and adds its own element to the same set; one replica then receives the writers' changes one writer at a time (as from the network) and reads the merged value. Time = receiving all of them + reading the value, median of ${r.config.conflictRuns} (p95; 3 runs from 1,000 writers up). Determinism: the same changes merged in the writers' order and in 3 seeded random orders (seed ${r.w6.seed}) must give the same state hash, keep every writer's set element and pick one writer's value. Loro and Automerge model the set as a map whose keys are the elements.`, "");
    lines.push("| N | writers | Ibex merge | Loro merge | Automerge merge | Ibex / Loro | Ibex / Automerge | identical hash on every replica (Ibex / Loro / Automerge) | target | met |", "|---|---|---|---|---|---|---|---|---|---|");
    for (const [n, row] of Object.entries(r.w6.sizes)) {
      const cell = (impl) => `${fmt(median(row[impl].ms))} (${fmt(p95(row[impl].ms))})`;
      const same = ["ibex", "loro", "automerge"].map((impl) => (row[impl].identical ? "yes" : "**no**")).join(" / ");
      lines.push(`| ${Number(n).toLocaleString("en")} | ${row.writers.toLocaleString("en")} | ${cell("ibex")} | ${cell("loro")} | ${cell("automerge")} | ${ratio(median(row.ibex.ms), median(row.loro.ms))} | ${ratio(median(row.ibex.ms), median(row.automerge.ms))} | ${same} | ${tm(`W6.hash@${n}`, `W6.merge@${n}`)} |`);
    }
    lines.push(
      "",
      "How Ibex keeps this linear in the writers: when every leaf of an item is a child of the same commit (W writers who edited the same version), the merge is kept field by field (`StarMerge` in `rust/core/src/merge.rs`): for a plain field or a map key the latest edit wins by one comparison per arrival, set additions and removals are applied as they come, and the merged value is updated in place. A new leaf that sorts after all others is folded into the cached head with one three-way merge against its lowest common ancestor (a walk over the fork only). Both equal the pairwise fold of the full merge exactly, which the merge-law property tests check with hundreds of writers and random delivery orders. What still grows with W here is the value itself: every arrival hands the item's whole value (W set elements) to JavaScript.",
      "",
    );
  }
  lines.push("## Targets", "");
  lines.push("Every target of `docs/BENCHMARKS.md` (`bench/targets.mjs`), evaluated from this run's numbers; \"not measured\" = the run produced no such number (or not the peer's it is compared with).", "");
  lines.push("| workload | measure | Ibex | target | met |", "|---|---|---|---|---|");
  for (const v of V.values()) lines.push(`| ${v.workload} | ${v.measure}${v.id.includes("@") ? ` (${v.id.split("@")[1]})` : ""} | ${v.shown} | ${v.target} | ${metCell(V, [v.id], { bold: true })} |`);
  const all = [...V.values()];
  lines.push("", `${all.filter((v) => v.met === true).length} met, ${all.filter((v) => v.met === false).length} missed, ${all.filter((v) => v.met === undefined).length} not measured.`, "");
  lines.push(...causes(r));
  return lines.join("\n");
}

/** What this run's own numbers say about the memory and size misses. */
function causes(r) {
  const out = ["## What the misses are made of", ""];
  const big = r.w3?.[String(r.config.big)]?.ibex;
  if (big?.engineMemoryBytes) {
    out.push(`- **W8 memory** (${mb(big.engineMemoryBytes + big.heapBytes)} with ${r.config.big.toLocaleString("en")} items): the engine's WebAssembly memory is ${mb(big.engineMemoryBytes)}, the JavaScript mirror ${mb(big.heapBytes)} (TinyBase's store: ${mb(r.w3[String(r.config.big)].tinybase?.heapBytes)}). WebAssembly memory never shrinks, so it keeps the peak reached while opening.`);
  }
  for (const n of Object.keys(r.w3 ?? {})) {
    const row = r.w3[n]?.ibex;
    if (!row?.phases?.length || row.error || median(row.first) <= (Number(n) >= 1_000_000 ? 1500 : 150) || Number(n) < 100_000) continue;
    const at = (k) => median(row.phases.map((p) => p[k]));
    const first = median(row.first);
    out.push(`- **W3 first 50 rows at ${Number(n).toLocaleString("en")} items** (${fmt(first)}): ${fmt(at("ready"))} pass before \`IbexDB.open\` resolves — the page and the SDK's code are loaded at ${fmt(at("code"))}, then ${fmt(at("ready") - at("code"))} go to starting the worker, compiling the WebAssembly module and creating the engine — and ${fmt(first - at("ready"))} to opening the repository in the worker (its checkpoint read from OPFS and decoded: every item's key, leaves and head) and listing every head before the first slice crosses to the main thread. Not built: posting the first slice of heads before the others are listed, and compiling the module and starting the worker while the page's own code loads.`);
  }
  const openBig = r.w1?.ibex?.openBig;
  if (openBig?.length && median(openBig) > 150) {
    out.push(`- **W1 open 100,000 items** (${fmt(median(openBig))}, target 150 ms): the repository opens in the worker from its checkpoint (read from OPFS and decoded: every item's key, leaves and head — about 55 ms for the same 100,000 items in Node, 2026-12-01), its heads are listed in key order (about 36 ms in Node; the first 1,000 are posted before the others are listed) and cross to the main thread, whose mirror takes them in slices that yield every 8 ms so that no task passes 50 ms. Not built: decoding items lazily from the checkpoint (a key index, values read when first asked for) and sending heads straight from the checkpoint's bytes.`);
  }
  const create = r.w1?.ibex?.createInstance;
  if (create?.length && median(create) > 30) {
    out.push(`- **W1 create instance** (${fmt(median(create))}, target 30 ms; 26.9 ms in a run earlier on 2026-12-01, before compact commits made the module ~5% larger): a new database starts its worker, instantiates the WebAssembly module there (compiled once per page and shared), creates the engine and reads its session key and the certificate log from OPFS. The parts were not timed apart inside the worker; the module's size (W9) is the one known to have grown.`);
  }
  const million = r.w3?.["1000000"]?.ibex;
  if (million?.longest?.length && Math.max(...million.longest) > 50) {
    out.push(`- **W3 longest main-thread task at 1,000,000 items** (${fmt(Math.max(...million.longest))}; none over 50 ms at 100,000; 111–224 ms over the runs of 2026-12-01): the mirror's million item objects. The loads' slices yield every 8 ms, but the main thread's collector does not slice with them: a CPU profile of a million-item load (2026-12-01, \`IBEX_W3_PROFILE\`, read with \`bench/longest_task.mjs\`) had one collector pause of 102 ms and several of 19–28 ms. A later profile (after compact commits, same day) has its longest busy stretch at 213 ms — \`applyHead\` 118 ms, \`insertMany\` 33 ms, the collector 21 ms — but that stretch is several of the mirror's slices queued back to back, which a CPU profile does not split into tasks, so the long task itself is not attributed further. A mirror with no object per item until the item is read (values in a few large arrays) is the lever for both; not built.`);
  }
  const edit = r.w4?.rows?.find((x) => x.impl === "ibex" && x.mode === "edit");
  const batch = r.w4?.rows?.find((x) => x.impl === "ibex" && x.mode === "batch");
  if (edit?.commits && edit.bytes > 40 * 2 ** 20) {
    const split = edit.logBytes ? ` — the log ${mb(edit.logBytes)}, the checkpoint ${mb(edit.checkpointBytes)}` : "";
    out.push(`- **W4 bytes kept** (${mb(edit.bytes)} for ${edit.commits.toLocaleString("en")} one-character commits${split}): ${Math.round(edit.bytes / edit.commits)} bytes per commit. Commits are compact in the log since 2026-12-01 (log format 2: parents by place in the log, the delta base by its place among the parents, sessions and schemas by number, no repository path): \`rust/core/examples/log_stats.rs\` over this trace's log (2026-12-01) counts 259,066 deltas of 100.3 bytes each (26.0 MB, of which the 64-byte signatures are 16.6 MB) and 713 full copies of the text that end delta chains (29.4 MB: a chain is as long as a 64 MiB rebuild allows, ~650 edits at the text's final 100 KB); the checkpoint keeps 62 bytes per commit (its id, where it is in the log, its place in the graph and in log order). The same edits in ${batch ? `${batch.commits} commits keep ${mb(batch.bytes)}` : "fewer commits keep far less"}. Not built: compressing the full copies (no compression code in the module, see W9), chains longer than a 64 MiB rebuild, one signature for a run of a session's edits, a narrower checkpoint table.`);
  }
  if (edit?.edits && edit.edits / (edit.applyMs / 1000) < 10_000) {
    out.push(`- **W4 apply** (${Math.round(edit.edits / (edit.applyMs / 1000)).toLocaleString("en")} edits/s, one signed commit per edit): profiled on 2026-12-01 (Node, 100,000 edits of the trace, 13.0 s in all): Ed25519 signing 6.3 s (~63 µs per commit in WebAssembly's 32-bit field arithmetic; curve25519-dalek's 64-bit backend measured 20% slower there), applying each change to the text 0.67 s, diffing the new text against the previous one 0.66 s (3.9 s before the shared prefix and suffix were compared eight bytes at a time), JavaScript's garbage collector 0.87 s, the rest the main thread's mirror and the messages between it and the engine. With a signature per commit, 10,000 edits/s would need signing in under ~35 µs; one signature for a run of a session's edits is not built. (Delta chains as long as a 64 MiB rebuild allows measured ~20% slower to apply than chains of 255 before the diff change; not explained.)`);
  }
  if (edit?.memory > 50 * 2 ** 20) {
    out.push(`- **W4 memory after reopen** (${mb(edit.memory)} of resident memory)${edit.engineMemory ? `: ${mb(edit.engineMemory)} is the engine's WebAssembly memory` : ""}. Opening reads the checkpoint's head only (the table of where each of the ${edit.commits.toLocaleString("en")} commits is waits until history is asked for); the rest is Node's own heap and the text. Not analysed further.`);
  }
  if (r.w4ratio && r.w4ratio.ratio > 1.5) {
    const x = r.w4ratio;
    out.push(`- **Node, 20,000 edits vs written once** (${fmt(median(x.manyMs))} vs ${fmt(median(x.onceMs))}, ${x.ratio.toFixed(2)}×): both open from their checkpoint's head and neither reads the log or the checkpoint's table of commits; what still grows with the history is not analysed.`);
  }
  const wh = r.w9where;
  if (wh) {
    const share = (what) => wh.top.filter((t) => t.what.startsWith(what)).reduce((a, t) => a + t.bytes, 0);
    const pct = (x) => `${((100 * x) / wh.codeBytes).toFixed(0)}%`;
    out.push(`- **W9 size**: before optimization, slice sorting monomorphized per element type and comparator is ${pct(share("core::slice::sort"))} of the code and BTreeMap/BTreeSet ${pct(share("alloc::collections::btree"))}, against ${pct(share("ibex_core"))} for the engine's own logic (table in W9). History as a feature (2026-12-01: time travel, revert, playback, audit, conflicts, schema branches) added about 25 KB gzip; compact commits and the lazy checkpoint table (2026-12-01) about 17 KB more (333 → 350 KB); commit orders now share one sort instantiation (ranks instead of a \`sort_by_key\` closure per call site), which took sorting from 207 KB to 103 KB of code (140 KB before the history work). B-tree instantiations (the values' \`BTreeMap\`/\`BTreeSet\`) are the next lever. Two cheaper levers were tried on 2026-11-30 and not taken: ed25519 without precomputed basepoint tables (−35 KB gzip, but signing about twice as slow: 100 creates 7.75 → 16.5 ms) and opt-level "z" (−26 KB gzip, ~10% slower open and writes); see the workspace Cargo.toml.`);
  }
  const w11 = r.w11;
  if (w11?.relayPg3 && w11.relayPg1) {
    const t1 = w11.throughput1;
    const t3 = w11.throughput3;
    out.push(
      `- **W11 cross-instance relay** (p95 ${w11.relayPg3.p95} ms against ${w11.relayPg1.p95} ms on one server): on one server a commit is relayed to the other subscribers as soon as it is verified, before it is durable (only its writer's acknowledgement waits for the flush); between instances it travels through PostgreSQL, so it waits for the storing transaction's COMMIT (its WAL flush: NOTIFY is delivered only at commit), then the notification, then a read of the new rows (p50 ${w11.relayPg3.p50} ms). Sending commits to the other instances before they are durable would remove the wait but let an instance hold commits nobody stored; not done.`,
    );
    if (t1 && t3) {
      out.push(
        `- **W11 throughput** (${t1.commitsPerSecond.toLocaleString("en")} acknowledged commits/s with one server, ${t3.commitsPerSecond.toLocaleString("en")} with three): the bottleneck is PostgreSQL's commit: every flush of a repository is one transaction whose COMMIT waits for the WAL flush to disk, and three instances share that one database, so they do not add throughput. Together the servers, PostgreSQL and the clients used about ${(t1.serverCpu + t1.postgresCpu + t1.clientCpu).toFixed(1)} of the 2 cores. Diagnosis only (not a setting to use): the same run with PostgreSQL's \`synchronous_commit=off\` (\`IBEX_W11_PG_OPTS\`) did 7,527 / 7,022 commits/s with 1 / 3 servers using 1.7 of the 2 cores (then the machine's CPU is the limit), and its cross-instance relay p50 / p95 was 1.69 / 3.21 ms. Each flush is one statement (one round trip): an earlier version with a five-statement transaction did 2,760 / 2,688. This machine was shared with another build while W11 ran (load average 3–5 on 2 cores): over four runs the cross-instance p95 ranged 5.5–14 ms and one server's 0.7–1.5 ms (2026-12-01).`,
      );
    }
  }
  return out.length > 2 ? [...out, ""] : [];
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
