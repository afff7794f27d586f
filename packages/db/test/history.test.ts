// History as a feature, through the SDK in Node: values before and after,
// time travel (item.at, db.query({ at })), restore, playback, and — with
// two clients through a real ibex-server — revert of a session, conflicts,
// audit, and two schema versions side by side (schema branches).

import { afterEach, describe, expect, it } from "vitest";

import { type IbexDB, defineSchema } from "../src/index.node.js";
import { Task, openDb, tempDir } from "./helpers.js";
import { type Server, startServer } from "./server.js";

const servers: Server[] = [];
const dbs: IbexDB[] = [];

afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close().catch(() => {});
  for (const s of servers.splice(0)) await s.stop("SIGKILL");
});

async function local(name = "h") {
  const db = await openDb({ name, repos: ["/data/todos"] });
  dbs.push(db);
  return db;
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("history of one item", () => {
  it("lists each change with its values before and after, in app types", async () => {
    const db = await local();
    const t = db.create("/data/todos", Task, { text: "Milk", tags: new Set(["a"]) });
    await tick();
    t.update({ text: "Oat milk", due: new Date(86_400_000) });
    await tick();
    t.delete();
    const h = await t.history();
    expect(h).toHaveLength(3);
    expect(h[0]!.path).toBe(t.path);
    expect(h[0]!.session).toBe(db.status.sessionId);
    expect(h[1]!.changed).toEqual(["due", "text"]);
    expect(h[1]!.changes).toEqual([
      { field: "due", before: undefined, after: new Date(86_400_000) },
      { field: "text", before: "Milk", after: "Oat milk" },
    ]);
    expect(h[0]!.changes.find((c) => c.field === "tags")?.after).toEqual(new Set(["a"]));
    expect(h[2]!.changes).toEqual([{ field: "$deleted", before: false, after: true }]);
  });

  it("reads a long history a page at a time, newest first by pages", async () => {
    const db = await local();
    const t = db.create("/data/todos", Task, { text: "v0" });
    for (let i = 1; i < 120; i++) {
      await null; // one commit per edit
      t.set("text", `v${i}`);
    }
    await db.flush();
    const all = await t.history();
    expect(all).toHaveLength(120);
    const newest = await db.historyPage(t.path, { limit: 10 });
    expect(newest.total).toBe(120);
    expect(newest.entries).toEqual(all.slice(110));
    expect(newest.entries[9]!.changes).toEqual([{ field: "text", before: "v118", after: "v119" }]);
    // Chained by the first entry of each page, the pages are the history.
    const pages: (typeof all)[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await t.history({ limit: 50, ...(before ? { before } : {}) });
      if (page.length === 0) break;
      pages.unshift(page);
      before = page[0]!.id;
    }
    expect(pages.map((p) => p.length)).toEqual([20, 50, 50]);
    expect(pages.flat()).toEqual(all);
    await expect(t.history({ limit: -1 })).rejects.toMatchObject({ code: "ERR_VALIDATION" });
    await expect(t.history({ limit: 5, before: "00".repeat(32) })).rejects.toMatchObject({ code: "ERR_NOT_FOUND" });
  });

  it("item.at gives a read-only item at a commit or a time; revert restores it as a new commit", async () => {
    const db = await local();
    const t = db.create("/data/todos", Task, { text: "one", prio: 1 });
    await tick();
    const [first] = await t.history();
    await tick();
    t.update({ text: "two", prio: undefined });
    await db.flush();
    const old = await t.at(first!.id);
    expect(old?.get("text")).toBe("one");
    expect(old?.get("prio")).toBe(1);
    expect(() => old!.set("text", "x")).toThrow(expect.objectContaining({ code: "ERR_FORBIDDEN" }));
    expect((await t.at(first!.timestamp))?.get("text")).toBe("one");
    expect(await t.at(first!.timestamp - 1)).toBeUndefined();
    expect((await t.at(new Date()))?.get("text")).toBe("two");
    await expect(t.at("00".repeat(32))).rejects.toMatchObject({ code: "ERR_NOT_FOUND" });
    // Restore: the live item shows the old value at once, and history grows.
    const id = await t.revert(first!.id);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(t.get("text")).toBe("one");
    expect(t.get("prio")).toBe(1);
    expect((await t.history()).map((e) => e.id)).toContain(id);
  });

  it("db.query({ at }) evaluates over the past without touching live queries", async () => {
    const db = await local();
    const a = db.create("/data/todos", Task, { text: "a" });
    await db.flush();
    await tick();
    const t0 = Date.now();
    await tick();
    db.create("/data/todos", Task, { text: "b" });
    a.set("done", true);
    await db.flush();
    const live = db.query({ source: "/data/todos", where: (t) => !t.get("done"), sortBy: "text" });
    const past = db.query({ source: "/data/todos", where: (t) => !t.get("done"), sortBy: "text", at: t0 });
    expect(past.loading).toBe(true);
    await new Promise<void>((r) => past.subscribe(() => r()));
    expect(past.loading).toBe(false);
    expect(past.results.map((t) => t.get("text"))).toEqual(["a"]);
    expect(live.results.map((t) => t.get("text"))).toEqual(["b"]);
    expect(() => past.results[0]!.set("text", "x")).toThrow(expect.objectContaining({ code: "ERR_FORBIDDEN" }));
  });

  it("playback replays the list step by step, forward and back", async () => {
    const db = await local();
    const from = Date.now() - 1;
    const a = db.create("/data/todos", Task, { text: "a" });
    await tick();
    db.create("/data/todos", Task, { text: "b" });
    await tick();
    a.set("done", true);
    await db.flush();
    const p = await db.playback({ repo: "/data/todos", from });
    const open = p.query({ source: "/data/todos", schema: Task, where: (t) => !t.get("done"), sortBy: "text" });
    const texts = () => open.results.map((t) => t.get("text"));
    expect(p.steps).toHaveLength(3);
    expect(texts()).toEqual([]);
    const seen: string[][] = [];
    while (p.step()) {
      await tick();
      seen.push(texts());
    }
    expect(seen).toEqual([["a"], ["a", "b"], ["b"]]);
    p.seek(1);
    await tick();
    expect(texts()).toEqual(["a"]);
    p.seek(0);
    await tick();
    expect(texts()).toEqual([]);
    expect(p.item(a.path)?.gone).toBe(true);
    p.seekTime(p.steps[2]!.time);
    expect(p.position).toBe(3);
  });
});

describe("two sessions through ibex-server", () => {
  async function pair() {
    const s = await startServer();
    servers.push(s);
    const open = async (name: string) => {
      const db = await openDb({ name, server: s.url, storage: "memory", repos: ["/data/todos"] });
      dbs.push(db);
      return db;
    };
    return { s, a: await open("a"), b: await open("b") };
  }

  it("db.revert removes one session's changes, keeps the others', and reverting the revert restores", async () => {
    const { a, b } = await pair();
    const x = a.create("/data/todos", Task, { text: "x", prio: 1 });
    const y = a.create("/data/todos", Task, { text: "y" });
    await a.sync(10_000);
    await b.sync(10_000);
    // b vandalizes two items and creates one.
    b.item(x.path, Task)!.update({ text: "XXX", prio: 99 });
    b.item(y.path, Task)!.set("text", "YYY");
    b.create("/data/todos", Task, { text: "spam" });
    await b.sync(10_000);
    await a.sync(10_000);
    // a then edits a field b also changed.
    x.set("prio", 3);
    const audit = await a.audit({ repo: "/data/todos", session: b.status.sessionId });
    expect(audit).toHaveLength(3);
    expect(audit.every((e) => e.session === b.status.sessionId)).toBe(true);
    const ids = await a.revert({ repo: "/data/todos", session: b.status.sessionId! });
    expect(ids).toHaveLength(3);
    expect(x.get("text")).toBe("x");
    expect(x.get("prio")).toBe(3);
    expect(y.get("text")).toBe("y");
    const spam = a.query({ source: "/data/todos", where: (t) => t.get("text") === "spam", includeDeleted: true }).results[0]!;
    expect(spam.isDeleted).toBe(true);
    // The revert syncs like any edit.
    await a.sync(10_000);
    await b.sync(10_000);
    expect(b.item(x.path, Task)!.get("text")).toBe("x");
    // Undo the revert.
    await a.revert({ repo: "/data/todos", commits: ids });
    expect(x.get("text")).toBe("XXX");
    expect(x.get("prio")).toBe(3);
    expect(spam.isDeleted).toBe(false);
    await expect(a.revert({ repo: "/data/todos" })).rejects.toMatchObject({ code: "ERR_VALIDATION" });
  });

  it("a concurrent edit that lost is a conflict on both sides until the field is written again", async () => {
    const { a, b } = await pair();
    const x = a.create("/data/todos", Task, { text: "x" });
    await a.sync(10_000);
    await b.sync(10_000);
    // Concurrent: neither has seen the other's edit.
    const bx = b.item(x.path, Task)!;
    x.set("text", "from a");
    bx.set("text", "from b");
    await Promise.all([a.flush(), b.flush()]);
    await a.sync(10_000);
    await b.sync(10_000);
    await a.sync(10_000);
    const ca = await x.conflicts();
    const cb = await bx.conflicts();
    expect(ca).toEqual(cb);
    expect(ca).toHaveLength(1);
    expect(ca[0]!.field).toBe("text");
    expect([ca[0]!.winner.value, ca[0]!.losers[0]!.value].sort()).toEqual(["from a", "from b"]);
    expect(x.get("text")).toBe(ca[0]!.winner.value);
    x.set("text", "agreed");
    expect(await x.conflicts()).toEqual([]);
  });

  it("schema branches: a v1 and a v2 client side by side through the server", async () => {
    const s = await startServer();
    servers.push(s);
    const V1 = defineSchema({ ns: "note", version: 1, fields: { title: { type: "string", required: true }, count: { type: "number" } } });
    const V2 = defineSchema({
      ns: "note",
      version: 2,
      fields: { name: { type: "string", required: true }, count: { type: "number" }, prio: { type: "number", default: 0 } },
      upgrade: [{ rename: { from: "title", to: "name" } }],
    });
    const dir = tempDir();
    const open = async (name: string, schemas: any[], storage: any = "memory") => {
      const db = await openDb({ name, server: s.url, storage, schemas, repos: ["/data/notes"] });
      dbs.push(db);
      return db;
    };
    const old = await open("v1", [V1], { dir });
    const neu = await open("v2", [V1, V2]);
    const n = old.create("/data/notes", V1, { title: "milk", count: 1 });
    await old.sync(10_000);
    await neu.sync(10_000);
    const n2 = neu.item(n.path, V2)!;
    expect(n2.get("name")).toBe("milk");
    n2.set("prio", 5);
    await neu.sync(10_000);
    await old.sync(10_000);
    // v1 is not handed v2's value, and keeps writing.
    const n1 = old.item(n.path, V1)!;
    expect(n1.schema.version).toBe(1);
    expect(n1.get("title")).toBe("milk");
    n1.set("count", 2);
    await old.flush();
    await old.sync(10_000);
    await neu.sync(10_000);
    expect(n2.get("count")).toBe(2);
    expect(n2.get("prio")).toBe(5);
    expect(n2.get("name")).toBe("milk");
    expect(n1.get("title")).toBe("milk");
    // The old client upgrades: it sees everything.
    await old.close();
    const upgraded = await open("v1", [V1, V2], { dir });
    await upgraded.sync(10_000);
    const u = upgraded.item(n.path, V2)!;
    expect(u.get("prio")).toBe(5);
    expect(u.get("count")).toBe(2);
    expect(u.get("name")).toBe("milk");
  });
});
