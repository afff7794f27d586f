// Incremental queries checked against a brute-force recomputation over
// random edit sequences (seed printed; IBEX_SEED=<n> replays).

import { describe, expect, it } from "vitest";

import type { Item } from "../src/index.node.js";
import { Task, openDb, settle, tempDir } from "./helpers.js";

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

type T = Item<typeof Task.fields>;

describe("queries", () => {
  it("match a brute-force recomputation after every random batch", async () => {
    const seed = Number(process.env.IBEX_SEED ?? Date.now() % 1_000_000_007);
    console.log(`query property seed: ${seed} (replay with IBEX_SEED=${seed})`);
    const rand = rng(seed);
    const db = await openDb();
    await db.open("/data/q");
    const where = (t: T) => !t.get("done") && (t.get("prio") ?? 0) > 2;
    const specs = [
      { where, sortBy: "text" as const },
      { where, sortBy: "prio" as const, descending: true, limit: 5 },
      { sortBy: (a: T, b: T) => (a.get("due")?.getTime() ?? 0) - (b.get("due")?.getTime() ?? 0) },
      {},
    ];
    const queries = specs.map((s) => db.query({ source: "/data/q", schema: Task, ...s }));
    const refined = db.query({ source: queries[0]!, where: (t) => t.get("text").includes("a"), sortBy: "prio" });
    let notifications = 0;
    queries[0]!.subscribe(() => notifications++);
    const items: T[] = [];
    for (let round = 0; round < 60; round++) {
      const ops = 1 + Math.floor(rand() * 8);
      for (let k = 0; k < ops; k++) {
        const r = rand();
        if (r < 0.3 || items.length === 0) {
          items.push(db.create("/data/q", Task, { text: "abcdef".slice(0, 1 + Math.floor(rand() * 6)), prio: Math.floor(rand() * 6), due: new Date(Math.floor(rand() * 1000)) }));
        } else {
          const it = items[Math.floor(rand() * items.length)]!;
          if (r < 0.55) it.set("prio", Math.floor(rand() * 6));
          else if (r < 0.7) it.set("done", !it.get("done"));
          else if (r < 0.8) it.set("text", "abcdef".slice(Math.floor(rand() * 5)));
          else if (r < 0.9) it.set("due", new Date(Math.floor(rand() * 1000)));
          else it.isDeleted ? it.restore() : it.delete();
        }
      }
      await settle();
      const live = items.filter((i) => !i.isDeleted);
      const cmpPath = (a: T, b: T) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
      const brute = [
        live.filter(where).sort((a, b) => (a.get("text") < b.get("text") ? -1 : a.get("text") > b.get("text") ? 1 : cmpPath(a, b))),
        live.filter(where).sort((a, b) => (b.get("prio")! - a.get("prio")!) || cmpPath(a, b)).slice(0, 5),
        [...live].sort((a, b) => (a.get("due")!.getTime() - b.get("due")!.getTime()) || cmpPath(a, b)),
        [...live].sort(cmpPath),
      ];
      queries.forEach((q, i) => expect(q.results.map((x) => x.path), `query ${i}, round ${round}, seed ${seed}`).toEqual(brute[i]!.map((x) => x.path)));
      const ref = brute[0]!.filter((t) => t.get("text").includes("a")).sort((a, b) => (a.get("prio")! - b.get("prio")!) || cmpPath(a, b));
      expect(refined.results.map((x) => x.path), `refined, round ${round}, seed ${seed}`).toEqual(ref.map((x) => x.path));
      expect(queries[0]!.count).toBe(brute[0]!.length);
    }
    expect(notifications).toBeGreaterThan(0);
    expect(notifications).toBeLessThanOrEqual(60);
    await db.close();
  });

  it("results keep their identity until their content changes, and notify once per batch", async () => {
    const db = await openDb();
    await db.open("/data/q");
    const q = db.query({ source: "/data/q", schema: Task, where: (t) => !t.get("done"), sortBy: "text" });
    let calls = 0;
    q.subscribe(() => calls++);
    const a = db.create("/data/q", Task, { text: "a" });
    const b = db.create("/data/q", Task, { text: "b" });
    await settle();
    expect(calls).toBe(1);
    const first = q.results;
    expect(first.map((i) => i.get("text"))).toEqual(["a", "b"]);
    a.set("prio", 5); // not a sort or filter field: same results
    await settle();
    expect(q.results).toBe(first);
    expect(calls).toBe(1);
    b.set("text", "0"); // moves to the front
    a.set("done", true); // leaves
    await settle();
    expect(calls).toBe(2);
    expect(q.results).not.toBe(first);
    expect(q.results.map((i) => i.get("text"))).toEqual(["0"]);
    q.close();
    b.set("done", true);
    await settle();
    expect(calls).toBe(2);
    await db.close();
  });

  it("queries on a repository that is still loading fill in when it loads", async () => {
    const dir = (await import("./helpers.js")).tempDir();
    const db = await openDb({ storage: { dir } });
    for (let i = 0; i < 50; i++) db.create("/data/later", Task, { text: `t${i}`, done: i % 2 === 0 });
    await db.close();
    const again = await openDb({ storage: { dir } });
    const q = again.query({ source: "/data/later", where: (t) => !t.get("done") });
    expect(q.loading).toBe(true);
    expect(q.count).toBe(0);
    await again.open("/data/later");
    expect(q.loading).toBe(false);
    expect(q.count).toBe(25);
    await again.close();
  });
});

describe("queries over a loading repository", () => {
  it("hold every match in order once thousands of items load, whatever order heads arrive in", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    const keys: string[] = [];
    for (let i = 0; i < 5_000; i++) {
      // Keys whose path order differs from creation order.
      const key = `k${(i * 7919) % 5_000}`;
      keys.push(key);
      db.create("/data/load", Task, { text: `t${i}`, prio: (i * 31) % 97 }, { key });
    }
    await db.flush();
    await db.close();
    const again = await openDb({ storage: { dir } });
    // Created before the repository loads: filled slice by slice.
    const byPath = again.query({ source: "/data/load", schema: Task });
    const byPrio = again.query({ source: "/data/load", schema: Task, sortBy: "prio", where: (t) => t.get("prio")! % 2 === 0 });
    const refined = again.query({ source: byPrio, where: (t) => t.get("prio")! < 10 });
    await again.open("/data/load");
    expect(byPath.results.map((t) => t.key)).toEqual([...keys].sort());
    const prios = byPrio.results.map((t) => t.get("prio")!);
    expect(prios).toEqual([...prios].sort((a, b) => a - b));
    expect(byPrio.count).toBe(again.keys("/data/load").filter((k) => again.item<typeof Task.fields>(`/data/load/${k}`)!.get("prio")! % 2 === 0).length);
    expect(refined.results.every((t) => t.get("prio")! < 10 && t.get("prio")! % 2 === 0)).toBe(true);
    expect(refined.count).toBe(byPrio.results.filter((t) => t.get("prio")! < 10).length);
    // A query made after loading agrees with the one filled while loading.
    const after = again.query({ source: "/data/load", schema: Task, sortBy: "prio", where: (t) => t.get("prio")! % 2 === 0 });
    expect(after.results).toEqual(byPrio.results);
    await again.close();
  });
});

describe("shared queries", () => {
  it("a function in the options needs deps; equal options share one query, different deps do not", async () => {
    const db = await openDb();
    db.create("/data/s", Task, { text: "a", prio: 1 });
    db.create("/data/s", Task, { text: "b", prio: 5 });
    const over = (min: number) => ({ source: "/data/s", schema: Task, where: (t: Item<typeof Task.fields>) => t.get("prio")! > min });
    // Without deps two filters with the same text but different captured
    // values would silently share results: refused, saying what to do.
    expect(() => db.sharedQuery(over(0))).toThrow(expect.objectContaining({ code: "ERR_CONFIG" }));
    const low = db.sharedQuery(over(0), [0]);
    const high = db.sharedQuery(over(3), [3]);
    expect(low.query).not.toBe(high.query);
    expect(low.query.count).toBe(2);
    expect(high.query.count).toBe(1);
    expect(db.sharedQuery(over(0), [0]).query).toBe(low.query);
    // Plain options need no deps.
    const plain = db.sharedQuery({ source: "/data/s", sortBy: "text" });
    expect(plain.query.results.map((t) => t.get("text"))).toEqual(["a", "b"]);
    await db.close();
  });
});
