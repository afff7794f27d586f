import { describe, expect, it } from "vitest";

import { IbexError, defineSchema } from "../src/index.node.js";
import { Task, openDb, settle, tempDir } from "./helpers.js";

describe("items", () => {
  it("creates, reads and writes synchronously", async () => {
    const db = await openDb();
    const item = db.create("/data/todos", Task, { text: "Milk" });
    expect(item.get("text")).toBe("Milk");
    expect(item.get("done")).toBe(false);
    item.set("done", true);
    item.update({ text: "Oat milk", tags: new Set(["shop"]) });
    expect(item.get("done")).toBe(true);
    expect(item.get("text")).toBe("Oat milk");
    expect([...item.get("tags")!]).toEqual(["shop"]);
    expect(db.item(item.path)).toBe(item);
    item.delete();
    expect(item.isDeleted).toBe(true);
    await db.close();
  });

  it("db.item with a schema returns the item of that schema and refuses another", async () => {
    const db = await openDb();
    const item = db.create("/data/todos", Task, { text: "Milk" });
    expect(db.item(item.path, Task)).toBe(item);
    expect(db.item("/data/todos/nope", Task)).toBeUndefined();
    const Other = defineSchema({ ns: "other", version: 1, fields: { text: { type: "string" } } });
    expect(() => db.item(item.path, Other)).toThrow(expect.objectContaining({ code: "ERR_VALIDATION", path: item.path }));
    await db.close();
  });

  it("rejects invalid writes synchronously and changes nothing", async () => {
    const db = await openDb();
    const item = db.create("/data/todos", Task, { text: "A" });
    const revision = item.revision;
    const bad = (fn: () => void, code: string, words: string) => {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(IbexError);
      expect((err as IbexError).code).toBe(code);
      expect((err as IbexError).message).toContain(words);
    };
    // @ts-expect-error wrong type on purpose
    bad(() => item.set("done", "yes"), "ERR_VALIDATION", "expected boolean, got string");
    // @ts-expect-error unknown field on purpose
    bad(() => item.set("color", "red"), "ERR_VALIDATION", "unknown field");
    bad(() => item.set("text", undefined), "ERR_VALIDATION", "required");
    bad(() => item.set("prio", Number.NaN), "ERR_VALIDATION", "finite");
    bad(() => item.set("parent", "not/a path"), "ERR_VALIDATION", "not an item path");
    // @ts-expect-error missing required field on purpose
    bad(() => db.create("/data/todos", Task, {}), "ERR_VALIDATION", "required field is missing");
    bad(() => db.create("data/todos", Task, { text: "x" }), "ERR_PATH", "two segments");
    bad(() => db.create("/data/todos", Task, { text: "x" }, { key: "a b" }), "ERR_PATH", "item key");
    bad(() => item.update({ done: true, prio: Number.POSITIVE_INFINITY }), "ERR_VALIDATION", "finite");
    expect(item.get("done")).toBe(false);
    expect(item.revision).toBe(revision);
    await db.close();
  });

  it("persists across reopen and equals the state it closed with", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    const a = db.create("/data/todos", Task, { text: "A", tags: new Set(["x", 2, true]), due: new Date(1_700_000_000_000), meta: new Map([["k", 1]]) });
    a.set("notes", "hello");
    const b = db.create("/data/todos", Task, { text: "B" }, { key: "b" });
    b.delete();
    await db.flush();
    const snapshot = db.keys("/data/todos").sort().map((k) => [k, db.item(`/data/todos/${k}`)!.toObject(), db.item(`/data/todos/${k}`)!.isDeleted]);
    await db.close();

    const again = await openDb({ storage: { dir }, repos: ["/data/todos"] });
    const reopened = again.keys("/data/todos").sort().map((k) => [k, again.item(`/data/todos/${k}`)!.toObject(), again.item(`/data/todos/${k}`)!.isDeleted]);
    expect(reopened).toEqual(snapshot);
    expect(again.item("/data/todos/b")!.isDeleted).toBe(true);
    // Changes to one item within a tick are one commit: create+set, create+delete.
    expect(again.status.repos["/data/todos"]!.report!.commits).toBe(2);
    await again.close();
  });

  it("flush resolves only after the engine's storage flush", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    db.create("/data/todos", Task, { text: "durable" }, { key: "d" });
    await db.flush();
    // A second engine reading the same directory sees the flushed write.
    const other = await openDb({ storage: { dir }, repos: ["/data/todos"] });
    expect(other.item("/data/todos/d")?.get("text")).toBe("durable");
    await other.close();
    await db.close();
  });

  it("history lists commits with authors and changed fields", async () => {
    const db = await openDb();
    const item = db.create("/data/todos", Task, { text: "A" });
    await settle();
    item.set("done", true);
    await settle();
    item.set("text", "B");
    const h = await item.history();
    expect(h.map((e) => e.changed)).toEqual([["done", "text"], ["done"], ["text"]]);
    expect(new Set(h.map((e) => e.session)).size).toBe(1);
    expect(h[0]!.session).toBe(db.status.sessionId);
    await db.close();
  });

  it("reports status and progress while loading", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    for (let i = 0; i < 5000; i++) db.create("/data/big", Task, { text: `t${i}` });
    await db.flush();
    await db.close();
    const again = await openDb({ storage: { dir } });
    const seen: number[] = [];
    again.onStatus((s) => seen.push(s.loaded));
    await again.open("/data/big");
    expect(again.status.phase).toBe("ready");
    expect(again.status.repos["/data/big"]).toMatchObject({ phase: "ready", loaded: 5000, total: 5000 });
    expect(seen.some((n) => n > 0 && n < 5000)).toBe(true);
    await again.close();
  });

  it("closed databases refuse writes with ERR_CLOSED", async () => {
    const db = await openDb();
    const item = db.create("/data/todos", Task, { text: "A" });
    await db.close();
    expect(() => item.set("done", true)).toThrow(/closed/);
  });
});

describe("damaged storage", () => {
  it("reports a corrupted log through db.status and opens the rest", async () => {
    const { readFileSync, writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    for (let i = 0; i < 3; i++) {
      db.create("/data/todos", Task, { text: `item number ${i}` }, { key: `k${i}` });
      await db.flush();
    }
    await db.close();
    const file = join(dir, "data", "todos.log");
    const bytes = new Uint8Array(readFileSync(file));
    // Flip a byte inside the second record's payload (one char per byte).
    const at = new TextDecoder("latin1").decode(bytes).indexOf("item number 1");
    bytes[at] = bytes[at]! ^ 0xff;
    writeFileSync(file, bytes);

    // With its checkpoint, opening reads no log: every item's value is
    // there (the checkpoint holds it); the damage shows when the damaged
    // record is needed, as an error naming it, and nothing is changed.
    const withCheckpoint = await openDb({ storage: { dir } });
    await withCheckpoint.open("/data/todos");
    expect(withCheckpoint.status.repos["/data/todos"]!.report!.checkpoint).toMatch(/^used/);
    expect(withCheckpoint.keys("/data/todos").sort()).toEqual(["k0", "k1", "k2"]);
    expect(withCheckpoint.item("/data/todos/k1")!.get("text")).toBe("item number 1");
    await expect(withCheckpoint.history("/data/todos/k1")).rejects.toMatchObject({ code: "ERR_STORAGE", message: expect.stringContaining("checksum") });
    await withCheckpoint.close();

    // Without it, the whole log is scanned: the damaged record is reported
    // and skipped, the rest opens, and a new checkpoint is written.
    const { rmSync } = await import("node:fs");
    rmSync(`${file.slice(0, -4)}.ckpt`);
    const again = await openDb({ storage: { dir } });
    const errors: string[] = [];
    again.onError((e) => errors.push(e.message));
    await again.open("/data/todos");
    const report = again.status.repos["/data/todos"]!.report!;
    expect(report.corrupt).toHaveLength(1);
    expect(report.corrupt[0]!.reason).toContain("checksum");
    expect(report.checkpoint).toMatch(/^rebuilt/);
    expect(again.keys("/data/todos").sort()).toEqual(["k0", "k2"]);
    expect(errors.join()).toContain("damaged");
    await again.close();
  });
});

describe("durability without an explicit flush", () => {
  it("the engine flushes on its own shortly after writes, and status says when", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    db.create("/data/todos", Task, { text: "no flush called" }, { key: "auto" });
    // Not durable yet: "saved" must not show.
    expect(db.status.pendingWrites).toBe(1);
    // The engine's own flush makes it durable, and only then does the
    // status say nothing is pending (no flush() call anywhere).
    await new Promise<void>((resolve) => {
      const off = db.onStatus((s) => {
        if (s.pendingWrites === 0) {
          off();
          resolve();
        }
      });
    });
    // Another engine on the same files sees it: it reached storage.
    const other = await openDb({ storage: { dir }, repos: ["/data/todos"] });
    expect(other.item("/data/todos/auto")?.get("text")).toBe("no flush called");
    await other.close();
    await db.close();
  });
});

describe("engine stats", () => {
  it("reports the engine's WebAssembly memory, which grows with the data", async () => {
    const db = await openDb();
    const before = (await db.stats()).engineMemoryBytes;
    expect(before).toBeGreaterThan(0);
    expect(before % 65_536).toBe(0);
    for (let i = 0; i < 20_000; i++) db.create("/data/many", Task, { text: `item ${i} `.repeat(4) });
    await db.flush();
    expect((await db.stats()).engineMemoryBytes).toBeGreaterThan(before);
    await db.close();
  });

  it("closing a database gives its memory back: opening and closing again does not grow it", async () => {
    // In Node every database shares one WebAssembly instance; an engine
    // not freed at close kept everything it held (here ~6 MB per cycle).
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    for (let i = 0; i < 20_000; i++) db.create("/data/many", Task, { text: `item ${i} `.repeat(4) });
    await db.close();
    const sizes: number[] = [];
    for (let r = 0; r < 6; r++) {
      const again = await openDb({ storage: { dir }, repos: ["/data/many"] });
      expect(again.count("/data/many")).toBe(20_000);
      sizes.push((await again.stats()).engineMemoryBytes);
      await again.close();
    }
    expect(sizes[5]! - sizes[1]!).toBeLessThan(1 << 20);
  });
});

describe("log formats", () => {
  // The Rust fixture: a repository log and checkpoint written by log format
  // 1 (59 commits of `all@2` by two writers, a fork closed, a deleted item).
  const All1 = defineSchema({
    ns: "all",
    version: 1,
    fields: {
      title: { type: "string" },
      count: { type: "number" },
      done: { type: "boolean", default: false },
      due: { type: "date" },
      tags: { type: "set" },
      attrs: { type: "map" },
      body: { type: "text" },
      link: { type: "ref" },
    },
  });
  const All2 = defineSchema({
    ns: "all",
    version: 2,
    fields: {
      name: { type: "string" },
      count: { type: "number" },
      done: { type: "boolean", default: false },
      due: { type: "date" },
      tags: { type: "set" },
      attrs: { type: "map" },
      body: { type: "text" },
      link: { type: "ref" },
      prio: { type: "number", default: 0 },
    },
    upgrade: [{ rename: { from: "title", to: "name" } }],
  });

  it("opens a log of the previous format, converts it and says so", async () => {
    const { copyFileSync, mkdirSync, statSync } = await import("node:fs");
    const { join } = await import("node:path");
    const dir = tempDir();
    const fixture = new URL("../../../rust/core/tests/fixtures/log-v1/", import.meta.url);
    mkdirSync(join(dir, "data"), { recursive: true });
    copyFileSync(new URL("log", fixture), join(dir, "data", "test.log"));
    copyFileSync(new URL("checkpoint", fixture), join(dir, "data", "test.ckpt"));
    const before = statSync(join(dir, "data", "test.log")).size;

    const db = await openDb({ schemas: [All1, All2], storage: { dir } });
    await db.open("/data/test");
    const report = db.status.repos["/data/test"]!.report!;
    expect(report.convertedFrom).toBe(1);
    expect(report.commits).toBe(59);
    expect(report.checkpoint).toMatch(/^rebuilt: .*format 1/);
    expect(db.item("/data/test/item1", All2)!.get("name")).toBe("t200");
    expect(db.item("/data/test/item2", All2)!.get("body")).toBe("éééééééé");
    expect(db.item("/data/test/item3", All2)!.isDeleted).toBe(true);
    const history = await db.history("/data/test/item1");
    expect(history.length).toBeGreaterThan(10);
    db.item("/data/test/item0", All2)!.set("name", "after");
    await db.close();
    expect(statSync(join(dir, "data", "test.log")).size).toBeLessThan(before * 0.7);

    const again = await openDb({ schemas: [All1, All2], storage: { dir } });
    await again.open("/data/test");
    expect(again.status.repos["/data/test"]!.report!.convertedFrom).toBeNull();
    expect(again.status.repos["/data/test"]!.report!.checkpoint).toMatch(/^used/);
    expect(again.item("/data/test/item0", All2)!.get("name")).toBe("after");
    expect((await again.history("/data/test/item1")).map((e) => e.id)).toEqual(history.map((e) => e.id));
    await again.close();
  });
});
