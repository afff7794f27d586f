// The main-thread mirror against a scripted engine (a fake channel), so the
// order and timing of the engine's messages are under the test's control:
// values kept undecoded until read, loads applied in time-bounded slices,
// and changes that arrive while a load is still being applied.

import { describe, expect, it } from "vitest";

import { HeadReader, type Value, Writer, compareUtf8, writeFields } from "../src/wire/codec.js";
import type { EngineChannel, FromEngine, ToEngine } from "../src/wire/protocol.js";
import { Database } from "../src/main/database.js";
import { type Schema, defineSchema } from "../src/index.node.js";
import { Task, openDb, settle, tempDir } from "./helpers.js";

interface HeadSpec {
  key: string;
  fields: Record<string, Value>;
  deleted?: boolean;
  ns?: string;
  version?: number;
}

/** Heads as the engine encodes them (read by codec.ts `HeadReader`). */
function heads(repo: string, list: HeadSpec[]): Uint8Array {
  const w = new Writer();
  w.varint(list.length);
  for (const h of list) {
    w.str(repo);
    w.str(h.key);
    w.str(h.ns ?? "task");
    w.varint(h.version ?? 1);
    w.u8(h.deleted ? 1 : 0);
    writeFields(w, Object.entries(h.fields).sort((a, b) => compareUtf8(a[0], b[0])));
  }
  return w.finish();
}

const report = (items: number) => ({ commits: items, items, truncatedBytes: 0, pending: 0, corrupt: [], rejected: [], checkpoint: "none", convertedFrom: null });

/** An engine that answers `open` with `loads[repo]` and then sends the
 * `then` messages (as an engine that merged something right after). */
function scripted(loads: Record<string, Uint8Array>, then: FromEngine[] = []): { channel: EngineChannel; sent: ToEngine[] } {
  let handler: (m: FromEngine) => void = () => {};
  const sent: ToEngine[] = [];
  const channel: EngineChannel = {
    post(m) {
      sent.push(m);
      if (m.t === "init") queueMicrotask(() => handler({ t: "ready", sessionId: "s", engine: "test", storage: "memory", user: null }));
      else if (m.t === "open") {
        queueMicrotask(() => {
          const bytes = loads[m.repo] ?? heads(m.repo, []);
          handler({ t: "opened", id: m.id, repo: m.repo, report: report(0), heads: bytes, total: new HeadReader(bytes).total, writable: true });
          for (const x of then) handler(x);
        });
      } else if (m.t === "close" || m.t === "flush") queueMicrotask(() => handler({ t: "done", id: m.id }));
    },
    onMessage(h) {
      handler = h;
    },
    terminate() {},
  };
  return { channel, sent };
}

class TestDb extends Database {
  static async make(channel: EngineChannel, schemas: readonly Schema[] = [Task]): Promise<TestDb> {
    const db = new TestDb(channel, { name: "t", schemas });
    await db.start();
    return db;
  }

  /** A message from the engine, as if it had just arrived. */
  deliver(m: FromEngine): void {
    (this as unknown as { receive(m: FromEngine): void }).receive(m);
  }
}

const all: HeadSpec = {
  key: "a",
  fields: {
    text: { t: "string", v: "Milk" },
    done: { t: "boolean", v: true },
    tags: { t: "set", v: [false, 2, "x"] },
    due: { t: "date", v: 1_700_000_000_000 },
    prio: { t: "number", v: 2.5 },
    meta: { t: "map", v: [["k", 1], ["l", "v"]] },
    notes: { t: "text", v: "héllo 😀" },
    parent: { t: "ref", v: "/data/t/b" },
  },
};

describe("the mirror", () => {
  it("items read after a load, never written, have the engine's values", async () => {
    const { channel } = scripted({
      "/data/t": heads("/data/t", [all, { key: "b", fields: { text: { t: "string", v: "B" }, extra: { t: "number", v: 7 } }, deleted: true }, { key: "c", ns: "other", fields: { x: { t: "string", v: "y" } } }]),
    });
    const db = await TestDb.make(channel);
    await db.open("/data/t");
    const a = db.item<typeof Task.fields>("/data/t/a")!;
    expect(a.path).toBe("/data/t/a");
    expect(a.isDeleted).toBe(false);
    expect(a.schema).toBe(Task);
    expect(a.has("prio")).toBe(true);
    expect(a.get("text")).toBe("Milk");
    expect(a.get("done")).toBe(true);
    expect(a.get("tags")).toEqual(new Set([false, 2, "x"]));
    // Read twice: the same Set (converted once).
    expect(a.get("tags")).toBe(a.get("tags"));
    expect(a.get("due")).toEqual(new Date(1_700_000_000_000));
    expect(a.get("prio")).toBe(2.5);
    expect(a.get("meta")).toEqual(new Map<string, unknown>([["k", 1], ["l", "v"]]));
    expect(a.get("notes")).toBe("héllo 😀");
    expect(a.get("parent")).toBe("/data/t/b");
    expect(a.toObject()).toEqual({
      text: "Milk",
      done: true,
      tags: new Set([false, 2, "x"]),
      due: new Date(1_700_000_000_000),
      prio: 2.5,
      meta: new Map<string, unknown>([["k", 1], ["l", "v"]]),
      notes: "héllo 😀",
      parent: "/data/t/b",
    });
    // A field the schema does not declare is kept and readable.
    const b = db.item("/data/t/b")!;
    expect(b.isDeleted).toBe(true);
    expect(b.has("prio")).toBe(false);
    expect(b.toObject()).toEqual({ text: "B", extra: 7 });
    expect((b as unknown as { get(f: string): unknown }).get("extra")).toBe(7);
    // A namespace the app does not know: no declared fields, values kept.
    const c = db.item("/data/t/c")!;
    expect(c.schema.ns).toBe("other");
    expect(c.toObject()).toEqual({ x: "y" });
    // Written after the load: the write applies on the loaded values.
    a.update({ prio: 3, tags: new Set(["x", "z"]) });
    expect(a.get("tags")).toEqual(new Set(["x", "z"]));
    expect(a.get("text")).toBe("Milk");
    expect(db.keys("/data/t").sort()).toEqual(["a", "b", "c"]);
    await db.close();
  });

  it("a change to a never-read item notifies; the same value again does not", async () => {
    const load = heads("/data/t", [{ key: "a", fields: { text: { t: "string", v: "A" } } }]);
    const { channel } = scripted({ "/data/t": load });
    const db = await TestDb.make(channel);
    await db.open("/data/t");
    const a = db.item<typeof Task.fields>("/data/t/a")!;
    let calls = 0;
    a.subscribe(() => calls++);
    const rev = a.revision;
    const receive = (m: FromEngine) => db.deliver(m);
    receive({ t: "changed", bytes: heads("/data/t", [{ key: "a", fields: { text: { t: "string", v: "A" } } }]) });
    expect(calls).toBe(0);
    expect(a.revision).toBe(rev);
    receive({ t: "changed", bytes: heads("/data/t", [{ key: "a", fields: { text: { t: "string", v: "A2" } } }]) });
    expect(calls).toBe(1);
    expect(a.get("text")).toBe("A2");
    // Decoded now: a head with equal values is still no change.
    receive({ t: "changed", bytes: heads("/data/t", [{ key: "a", fields: { text: { t: "string", v: "A2" } } }]) });
    expect(calls).toBe(1);
    await db.close();
  });

  it("applies a large load in slices: a query's first rows come before the last slice, changes made meanwhile win", async () => {
    const n = 60_000;
    const list: HeadSpec[] = [];
    for (let i = 0; i < n; i++) list.push({ key: `k${String(i).padStart(6, "0")}`, fields: { text: { t: "string", v: `t${i}` }, prio: { t: "number", v: i % 10 } } });
    const late = heads("/data/big", [{ key: "k059999", fields: { text: { t: "string", v: "newer" }, prio: { t: "number", v: 1 } } }]);
    const { channel } = scripted({ "/data/big": heads("/data/big", list) }, [{ t: "changed", bytes: late }]);
    const db = await TestDb.make(channel);
    const q = db.query({ source: "/data/big", schema: Task, limit: 50 });
    const sorted = db.query({ source: "/data/big", schema: Task, sortBy: "prio", limit: 5 });
    let earlyRows = -1;
    const progress: number[] = [];
    db.onStatus((s) => progress.push(s.loaded));
    q.subscribe(() => {
      if (earlyRows < 0 && q.loading) earlyRows = q.results.length;
    });
    await db.open("/data/big");
    // More than one slice, and the first rows came while still loading.
    expect(new Set(progress.filter((x) => x > 0 && x < n)).size).toBeGreaterThan(0);
    expect(earlyRows).toBe(50);
    expect(q.loading).toBe(false);
    expect(q.count).toBe(n);
    expect(q.results.map((t) => t.key)).toEqual(list.slice(0, 50).map((h) => h.key));
    expect(sorted.results.map((t) => t.get("prio"))).toEqual([0, 0, 0, 0, 0]);
    // The change the engine sent after the load is the value now.
    expect(db.item<typeof Task.fields>("/data/big/k059999")!.get("text")).toBe("newer");
    await db.close();
  });

  it("a load in two parts: a query shows the first part's rows while the others are listed; open resolves after both", async () => {
    const list: HeadSpec[] = [];
    for (let i = 0; i < 3_000; i++) list.push({ key: `k${String(i).padStart(5, "0")}`, fields: { text: { t: "string", v: `t${i}` } } });
    let handler: (m: FromEngine) => void = () => {};
    const opens: number[] = [];
    const channel: EngineChannel = {
      post(m) {
        if (m.t === "init") queueMicrotask(() => handler({ t: "ready", sessionId: "s", engine: "test", storage: "memory", user: null }));
        else if (m.t === "open") {
          opens.push(m.id);
          queueMicrotask(() => handler({ t: "opened", id: m.id, repo: m.repo, report: report(3_000), heads: heads(m.repo, list.slice(0, 1_000)), total: 3_000, writable: true }));
        } else if (m.t === "close") queueMicrotask(() => handler({ t: "done", id: m.id }));
      },
      onMessage(h) {
        handler = h;
      },
      terminate() {},
    };
    const db = await TestDb.make(channel);
    const q = db.query({ source: "/data/two", schema: Task, limit: 50 });
    let opened = false;
    void db.open("/data/two").then(() => (opened = true));
    for (let i = 0; i < 200 && db.status.repos["/data/two"]?.loaded !== 1_000; i++) await settle();
    // The first part is in: the first rows are final (key order), the rest is still to come.
    expect(q.results.map((t) => t.key)).toEqual(list.slice(0, 50).map((h) => h.key));
    expect(q.loading).toBe(true);
    expect(db.status.repos["/data/two"]).toMatchObject({ phase: "loading", loaded: 1_000, total: 3_000 });
    expect(opened).toBe(false);
    // A new engine before the rest came: the load stops, `open` is asked again.
    db.deliver({ t: "leader", leader: true });
    await settle();
    expect(opens).toHaveLength(2);
    db.deliver({ t: "moreHeads", id: opens[1]!, repo: "/data/two", heads: heads("/data/two", list.slice(1_000)) });
    // The mirror takes the rest in slices that yield to the page (every
    // 8 ms): on a busy machine that is more than one turn.
    for (let i = 0; i < 200 && !opened; i++) await settle();
    expect(opened).toBe(true);
    expect(q.loading).toBe(false);
    expect(q.count).toBe(3_000);
    expect(db.status.repos["/data/two"]).toMatchObject({ phase: "ready", loaded: 3_000, total: 3_000 });
    await db.close();
  });

  it("a query over items loaded from storage agrees with their values (real engine)", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    for (let i = 0; i < 300; i++) db.create("/data/r", Task, { text: `t${i}`, prio: i % 7, tags: new Set(i % 2 ? ["odd"] : ["even", i]) }, { key: `k${i}` });
    await db.flush();
    await db.close();
    const again = await openDb({ storage: { dir }, repos: ["/data/r"] });
    const q = again.query({ source: "/data/r", schema: Task, where: (t) => t.get("tags")!.has("odd") && t.get("prio") === 3 });
    const want = Array.from({ length: 300 }, (_, i) => i).filter((i) => i % 2 === 1 && i % 7 === 3);
    expect(q.results.map((t) => t.get("text")).sort()).toEqual(want.map((i) => `t${i}`).sort());
    const k2 = again.item<typeof Task.fields>("/data/r/k2")!;
    expect(k2.get("tags")).toEqual(new Set(["even", 2]));
    k2.set("prio", 100);
    await settle();
    expect(k2.get("prio")).toBe(100);
    expect(k2.get("text")).toBe("t2");
    await again.close();
  });
});

// A schema with fields in another order than a head's (sorted) field list.
const Wide = defineSchema({ ns: "wide", version: 1, fields: { zeta: { type: "string" }, alpha: { type: "number" }, mid: { type: "set" } } });

describe("field layout", () => {
  it("maps a head's sorted fields onto the schema's declaration order", async () => {
    const { channel } = scripted({ "/data/w": heads("/data/w", [{ key: "x", ns: "wide", fields: { zeta: { t: "string", v: "z" }, alpha: { t: "number", v: 1 }, mid: { t: "set", v: ["m"] } } }]) });
    const d = await TestDb.make(channel, [Wide]);
    await d.open("/data/w");
    const x = d.item<typeof Wide.fields>("/data/w/x")!;
    expect(x.get("zeta")).toBe("z");
    expect(x.get("alpha")).toBe(1);
    expect(x.get("mid")).toEqual(new Set(["m"]));
    x.set("zeta", undefined);
    expect(x.has("zeta")).toBe(false);
    expect(x.toObject()).toEqual({ alpha: 1, mid: new Set(["m"]) });
    await d.close();
  });
});
