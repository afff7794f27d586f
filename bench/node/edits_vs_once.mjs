// Issue 15's Node measure: opening a database whose item took 20,000
// one-character edits (20,000 commits) against the same text written in
// one commit. Both are closed (so a checkpoint is written) and reopened in
// this fresh process, k times each; prints one JSON line with the medians
// and their ratio. Costs that follow the data, not the history, keep the
// ratio near 1.
//   node --expose-gc node/edits_vs_once.mjs <edits> <reopens>

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const { IbexDB, defineSchema } = await import("../../packages/db/dist/index.node.js");
const S = defineSchema({ ns: "doc", version: 1, fields: { text: { type: "text" } } });
const edits = Number(process.argv[2] ?? 20_000);
const k = Number(process.argv[3] ?? 7);

async function write(oneByOne) {
  const dir = mkdtempSync(join(tmpdir(), "ibex-20k-"));
  const db = await IbexDB.open({ name: "e", schemas: [S], storage: { dir } });
  const it = db.create("/data/doc", S, {}, { key: "d" });
  await db.flush();
  let text = "";
  for (let i = 0; i < edits; i++) text += String.fromCharCode(97 + (i % 26));
  if (oneByOne) {
    for (let i = 0; i < edits; i++) {
      it.splice("text", i, 0, text[i]);
      // One commit per edit: changes made in one tick are one commit.
      await null;
    }
  } else it.set("text", text);
  await db.flush();
  await db.close();
  return { dir, text };
}

async function opens(dir, text) {
  const times = [];
  for (let r = 0; r < k; r++) {
    const t0 = performance.now();
    const db = await IbexDB.open({ name: "e", schemas: [S], storage: { dir }, repos: ["/data/doc"] });
    const got = db.item("/data/doc/d").get("text");
    times.push(performance.now() - t0);
    if (got !== text) throw new Error("the reopened text differs");
    await db.close();
  }
  return times;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const many = await write(true);
const once = await write(false);
// Warm the module (compile, first instance) before timing either.
await (await IbexDB.open({ name: "warm", schemas: [S] })).close();
const manyMs = await opens(many.dir, many.text);
const onceMs = await opens(once.dir, once.text);
console.log(JSON.stringify({ edits, manyMs, onceMs, ratio: median(manyMs) / median(onceMs) }));
