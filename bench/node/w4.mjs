// W4 — history stress: the B4 editing trace (259,778 single-character
// edits of the automerge paper) applied to one item's text, one commit per
// edit and one per 1,000 edits; then commits/s, bytes kept, reopen time
// and memory after reopening. Node, one child process per implementation
// and mode (so memory is not shared with the others):
//   node --expose-gc node/w4.mjs <ibex|loro|automerge> <edit|batch> <edits> <reopens>
// prints one JSON line. Loro and Automerge keep history in memory; their
// "bytes" are their saved snapshot, "reopen" loads it. Ibex keeps its log
// on disk (fsync'd files); "reopen" opens it and loads the item.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";

export const TRACE_PATHS = [process.env.IBEX_TRACE, fileURLToPath(new URL("../data/automerge-paper.json.gz", import.meta.url))];

export function findTrace(from) {
  for (const p of TRACE_PATHS) {
    if (!p) continue;
    const abs = p.startsWith("/") ? p : join(from, p);
    try {
      if (statSync(abs).isFile()) return abs;
    } catch {}
  }
  return null;
}

function dirBytes(d) {
  let n = 0;
  for (const e of readdirSync(d, { withFileTypes: true })) n += e.isDirectory() ? dirBytes(join(d, e.name)) : statSync(join(d, e.name)).size;
  return n;
}

const APPLY = {
  async ibex(edits, batch) {
    const { IbexDB, defineSchema } = await import("../../packages/db/dist/index.node.js");
    const S = defineSchema({ ns: "doc", version: 1, fields: { text: { type: "text" } } });
    const dir = mkdtempSync(join(tmpdir(), "ibex-w4-"));
    const db = await IbexDB.open({ name: "w4", schemas: [S], storage: { dir } });
    const it = db.create("/data/doc", S, {}, { key: "d" });
    await db.flush();
    const t0 = performance.now();
    for (let i = 0; i < edits.length; i++) {
      const [pos, del, ins] = edits[i];
      it.splice("text", pos, del, ins);
      // Changes made in one tick are one commit: yielding ends it.
      if ((i + 1) % batch === 0) await null;
    }
    await db.flush();
    const applyMs = performance.now() - t0;
    // The history's length (one page of one entry: every entry carries the
    // whole text, so the history is not read whole).
    const commits = (await db.historyPage("/data/doc/d", { limit: 1 })).total - 1;
    await db.close();
    // The log and its checkpoint, apart (where the bytes go).
    const data = join(dir, "data");
    return { applyMs, commits, bytes: dirBytes(dir), logBytes: statSync(join(data, "doc.log")).size, checkpointBytes: statSync(join(data, "doc.ckpt")).size, artifact: dir };
  },
  async loro(edits, batch) {
    const { LoroDoc } = await import("loro-crdt");
    const doc = new LoroDoc();
    const t = doc.getText("text");
    let commits = 0;
    const t0 = performance.now();
    for (let i = 0; i < edits.length; i++) {
      const [pos, del, ins] = edits[i];
      if (del) t.delete(pos, del);
      if (ins) t.insert(pos, ins);
      if ((i + 1) % batch === 0 || i === edits.length - 1) {
        doc.commit();
        commits++;
      }
    }
    const snapshot = doc.export({ mode: "snapshot" });
    const applyMs = performance.now() - t0;
    return { applyMs, commits, bytes: snapshot.length, artifact: saveTemp(snapshot) };
  },
  async automerge(edits, batch) {
    const A = await import("@automerge/automerge");
    let doc = A.from({ text: "" });
    let commits = 0;
    const t0 = performance.now();
    for (let i = 0; i < edits.length; i += batch) {
      const chunk = edits.slice(i, i + batch);
      doc = A.change(doc, (d) => {
        for (const [pos, del, ins] of chunk) A.splice(d, ["text"], pos, del, ins);
      });
      commits++;
    }
    const saved = A.save(doc);
    const applyMs = performance.now() - t0;
    return { applyMs, commits, bytes: saved.length, artifact: saveTemp(saved) };
  },
};

function saveTemp(bytes) {
  const f = join(mkdtempSync(join(tmpdir(), "ibex-w4-")), "doc.bin");
  writeFileSync(f, bytes);
  return f;
}

/** Opens what `APPLY` kept, `k` times; returns the times, the text and the
 * resident memory the last opened document holds (this process is fresh:
 * the baseline is taken after loading the module, before opening). */
const REOPEN = {
  async ibex(dir, k) {
    const { IbexDB, defineSchema } = await import("../../packages/db/dist/index.node.js");
    const S = defineSchema({ ns: "doc", version: 1, fields: { text: { type: "text" } } });
    const open = () => IbexDB.open({ name: "w4", schemas: [S], storage: { dir }, repos: ["/data/doc"] });
    await (await IbexDB.open({ name: "warm", schemas: [S] })).close();
    return timesAndMemory(k, async () => {
      const db = await open();
      return { text: db.item("/data/doc/d").get("text"), close: () => db.close(), engineMemory: async () => (await db.stats()).engineMemoryBytes };
    });
  },
  async loro(file, k) {
    const { LoroDoc } = await import("loro-crdt");
    const bytes = readFileSync(file);
    new LoroDoc().free?.();
    return timesAndMemory(k, async () => {
      const d = new LoroDoc();
      d.import(bytes);
      return { text: d.getText("text").toString(), close: () => d.free?.() };
    });
  },
  async automerge(file, k) {
    const A = await import("@automerge/automerge");
    const bytes = new Uint8Array(readFileSync(file));
    A.free?.(A.from({ warm: 1 }));
    return timesAndMemory(k, async () => {
      const d = A.load(bytes);
      return { text: d.text, close: () => A.free?.(d) };
    });
  },
};

async function timesAndMemory(k, open) {
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  const reopen = [];
  let last;
  for (let r = 0; r < k; r++) {
    const t0 = performance.now();
    last = await open();
    reopen.push(performance.now() - t0);
    if (r < k - 1) await last.close();
  }
  globalThis.gc?.();
  const memory = process.memoryUsage().rss - base;
  // Ibex: how much of that is the engine's WebAssembly memory (its peak:
  // WebAssembly memory never shrinks).
  const engineMemory = await last.engineMemory?.();
  const text = last.text;
  await last.close();
  return { reopen, memory, engineMemory, text };
}

const self = fileURLToPath(import.meta.url);

if (process.argv[1] === self && process.argv[2] === "reopen") {
  const [, , , impl, artifact, k] = process.argv;
  const r = await REOPEN[impl](artifact, Number(k));
  console.log(JSON.stringify({ reopen: r.reopen, memory: r.memory, engineMemory: r.engineMemory, length: r.text.length, text: r.text }));
} else if (process.argv[1] === self) {
  const [impl, mode, n, reopens] = process.argv.slice(2);
  const tracePath = findTrace(process.cwd());
  const trace = JSON.parse(gunzipSync(readFileSync(tracePath)));
  const all = trace.txns.flatMap((t) => t.patches);
  const edits = all.slice(0, Number(n));
  // The expected text: the trace's end content, or (for a prefix) the
  // edits replayed on a plain string.
  let expected = trace.startContent;
  if (edits.length === all.length) expected = trace.endContent;
  else for (const [pos, del, ins] of edits) expected = expected.slice(0, pos) + ins + expected.slice(pos + del);
  const a = await APPLY[impl](edits, mode === "edit" ? 1 : 1000);
  const out = execFileSync(process.execPath, ["--expose-gc", self, "reopen", impl, a.artifact, reopens], { maxBuffer: 64 << 20 }).toString();
  const r = JSON.parse(out);
  // IBEX_W4_KEEP=1 keeps what was written (for rust/core/examples/log_stats.rs).
  if (process.env.IBEX_W4_KEEP) console.error(`kept ${a.artifact}`);
  else rmSync(a.artifact.endsWith("doc.bin") ? dirname(a.artifact) : a.artifact, { recursive: true, force: true });
  const ok = r.text === expected;
  console.log(JSON.stringify({ impl, mode, edits: edits.length, ok, applyMs: a.applyMs, commits: a.commits, bytes: a.bytes, logBytes: a.logBytes, checkpointBytes: a.checkpointBytes, reopen: r.reopen, memory: r.memory, engineMemory: r.engineMemory }));
  process.exit(ok ? 0 : 1);
}
