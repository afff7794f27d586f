// W6 — conflicts at scale, in Node (merge cost is CPU, not storage).
// W = 20·√N writers start from the same base item and, concurrently (no
// writer sees another's write), each set the same field (`title`) to its own
// value and add its own element to the same set (`tags`). One replica then
// merges every writer's changes: merge time. Determinism: three more
// replicas merge the same changes in seeded random orders; the final state
// (title + sorted tags) must hash the same on all of them, keep every added
// element, and pick one writer's title. Ibex, Loro and Automerge do the
// same thing; Loro and Automerge have no set type, so `tags` is a map whose
// keys are the elements (how their docs model sets). Every implementation
// receives the writers' changes one writer at a time, as they would arrive
// from the network, and the merged value is read once at the end.

import { createHash } from "node:crypto";

const hash = (title, tags) => createHash("sha256").update(JSON.stringify([title, [...tags].sort()])).digest("hex").slice(0, 16);

/** Seeded shuffle (mulberry32) so a failing order can be replayed. */
function shuffled(xs, seed) {
  let a = seed >>> 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const IMPLS = {
  async ibex(W) {
    const { IbexDB, defineSchema } = await import("../../packages/db/dist/index.node.js");
    const S = defineSchema({ ns: "w6", version: 1, fields: { title: { type: "string", required: true }, tags: { type: "set" } } });
    const open = (name) => IbexDB.open({ name, schemas: [S], storage: "memory" });
    const base = await open("base");
    base.create("/data/w6", S, { title: "base", tags: new Set(["base"]) }, { key: "hot" });
    const baseImage = await base.export("/data/w6");
    await base.close();
    // Each writer is its own replica with its own session key.
    const changes = [];
    for (let w = 0; w < W; w++) {
      const db = await open(`writer${w}`);
      await db.import("/data/w6", baseImage);
      const it = db.item("/data/w6/hot");
      it.update({ title: `writer ${w}`, tags: new Set([...it.get("tags"), `w${w}`]) });
      changes.push(await db.export("/data/w6"));
      await db.close();
    }
    return async (order) => {
      const db = await open("merger");
      await db.import("/data/w6", baseImage);
      const t0 = performance.now();
      for (const i of order) await db.import("/data/w6", changes[i]);
      const it = db.item("/data/w6/hot");
      const title = it.get("title");
      const tags = it.get("tags");
      const ms = performance.now() - t0;
      await db.close();
      return { ms, title, tags: [...tags] };
    };
  },
  async loro(W) {
    const { LoroDoc, LoroMap } = await import("loro-crdt");
    const base = new LoroDoc();
    base.setPeerId(1n);
    const m = base.getMap("item");
    m.set("title", "base");
    m.setContainer("tags", new LoroMap()).set("base", true);
    base.commit();
    const snapshot = base.export({ mode: "snapshot" });
    const baseVersion = base.oplogVersion();
    const changes = [];
    for (let w = 0; w < W; w++) {
      const d = LoroDoc.fromSnapshot(snapshot);
      d.setPeerId(BigInt(w + 2));
      const im = d.getMap("item");
      im.set("title", `writer ${w}`);
      im.get("tags").set(`w${w}`, true);
      d.commit();
      changes.push(d.export({ mode: "update", from: baseVersion }));
    }
    return async (order) => {
      const d = LoroDoc.fromSnapshot(snapshot);
      const t0 = performance.now();
      for (const i of order) d.import(changes[i]);
      const v = d.getMap("item").toJSON();
      const ms = performance.now() - t0;
      return { ms, title: v.title, tags: Object.keys(v.tags) };
    };
  },
  async automerge(W) {
    const A = await import("@automerge/automerge");
    const base = A.from({ title: "base", tags: { base: true } }, { actor: "00".repeat(16) });
    const changes = [];
    for (let w = 0; w < W; w++) {
      const actor = (w + 1).toString(16).padStart(32, "0");
      const d = A.change(A.clone(base, { actor }), (x) => {
        x.title = `writer ${w}`;
        x.tags[`w${w}`] = true;
      });
      changes.push(A.getChanges(base, d));
    }
    return async (order) => {
      let d = A.clone(base);
      const t0 = performance.now();
      for (const i of order) d = A.applyChanges(d, changes[i])[0];
      const title = d.title;
      const tags = Object.keys(d.tags);
      const ms = performance.now() - t0;
      return { ms, title, tags };
    };
  },
};

/** Runs W6 for sizes `ns`; `runs` timed merges (in writer order) per cell. */
export async function w6({ ns, runs, seed }) {
  const out = { seed, sizes: {} };
  for (const n of ns) {
    const W = Math.round(20 * Math.sqrt(n));
    out.sizes[n] = { writers: W };
    for (const [impl, make] of Object.entries(IMPLS)) {
      process.stdout.write(`W6 ${impl} N=${n} (${W} writers)… `);
      const merge = await make(W);
      const inOrder = [...Array(W).keys()];
      const ms = [];
      // The 2,000-writer cell takes Loro ~13 s a merge here: fewer runs.
      const cellRuns = W >= 1000 ? Math.min(runs, 3) : runs;
      for (let r = 0; r < cellRuns; r++) ms.push((await merge(inOrder)).ms);
      const hashes = [];
      for (let k = 0; k < 3; k++) {
        const s = seed + 1000 * k + n;
        const res = await merge(shuffled(inOrder, s));
        const missing = [...Array(W).keys()].filter((w) => !res.tags.includes(`w${w}`));
        if (missing.length || !res.tags.includes("base")) throw new Error(`W6 ${impl}: merge (order seed ${s}) lost set additions of writers ${missing.slice(0, 5).join(", ")}`);
        if (!/^writer \d+$/.test(res.title)) throw new Error(`W6 ${impl}: merged title ${JSON.stringify(res.title)} is no writer's value`);
        hashes.push(hash(res.title, res.tags));
      }
      const first = await merge(inOrder);
      hashes.unshift(hash(first.title, first.tags));
      out.sizes[n][impl] = { ms, hashes, identical: hashes.every((h) => h === hashes[0]), winner: first.title };
      console.log(`merge ${ms.map((x) => x.toFixed(1)).join("/")} ms, ${out.sizes[n][impl].identical ? "identical" : "DIFFERENT"} hashes`);
    }
  }
  return out;
}
