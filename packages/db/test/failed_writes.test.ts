// Writes the engine cannot make: a batch it cannot read (a "poison"
// batch), an engine that throws. Each write gets an answer, the mirror
// shows the engine's state again, the error names the item, the next
// flush() rejects, and later writes go on working. And a full disk, where
// the engine keeps the writes and flush() says they are not saved yet.

import { describe, expect, it } from "vitest";

import { IbexError } from "../src/index.node.js";
import { Database, type OpenOptions } from "../src/main/database.js";
import type { LogBackend, WasmEngine } from "../src/engine/wasm_engine.js";
import type { StorageProvider } from "../src/engine/storage.js";
import { MemoryStorage, inProcessChannel, nodeEngineFactory } from "../src/node/index.js";
import type { EngineChannel, ToEngine } from "../src/wire/protocol.js";
import { Task, settle } from "./helpers.js";

/** A database over a channel of the test's own (apps use IbexDB.open). */
class TestDB extends Database {
  static async over(channel: EngineChannel, opts: OpenOptions = { name: "t", schemas: [Task] }): Promise<TestDB> {
    const db = new TestDB(channel, opts);
    await db.start();
    return db;
  }
}

/** An in-process channel whose `mutate` batches pass through `edit`. */
async function channelWith(edit: (m: Extract<ToEngine, { t: "mutate" }>) => Uint8Array, storage: StorageProvider = new MemoryStorage()): Promise<EngineChannel> {
  const inner = await inProcessChannel(await nodeEngineFactory(), storage);
  return { ...inner, post: (m) => inner.post(m.t === "mutate" ? { ...m, batch: edit(m) } : m) };
}

function collectErrors(db: Database): IbexError[] {
  const errors: IbexError[] = [];
  db.onError((e) => errors.push(e));
  return errors;
}

describe("writes the engine cannot make", () => {
  it("a batch the engine cannot read fails write by write, reverts the mirror and drains", async () => {
    // While `poison`, batches lose their last two bytes: the last write in
    // each cannot be read, the ones before it can.
    let poison = false;
    const db = await TestDB.over(await channelWith((m) => (poison ? m.batch.subarray(0, m.batch.length - 2) : m.batch)));
    const errors = collectErrors(db);
    const kept = db.create("/data/todos", Task, { text: "kept" }, { key: "kept" });
    const other = db.create("/data/todos", Task, { text: "other" }, { key: "other" });
    await db.flush();
    const q = db.query({ source: "/data/todos", schema: Task });

    poison = true;
    kept.set("text", "saved");
    other.set("text", "lost");
    expect(other.get("text")).toBe("lost");
    const err = await db.flush().catch((e: unknown) => e);
    // Every write was answered: nothing pending, nothing re-sent forever.
    expect(db.status.pendingWrites).toBe(0);
    expect(err).toBeInstanceOf(IbexError);
    expect(err).toMatchObject({ code: "ERR_DECODE", path: "/data/todos/other" });
    expect(errors.map((e) => e.path)).toEqual(["/data/todos/other"]);
    // The mirror shows what the engine has: the readable write, not the other.
    expect(kept.get("text")).toBe("saved");
    expect(other.get("text")).toBe("other");

    // A creation that fails: the item is gone again, from queries too.
    const fresh = db.create("/data/todos", Task, { text: "never stored" }, { key: "fresh" });
    expect(q.count).toBe(3);
    await expect(db.flush()).rejects.toMatchObject({ code: "ERR_DECODE", path: "/data/todos/fresh" });
    expect(db.item("/data/todos/fresh")).toBeUndefined();
    expect(fresh.gone).toBe(true);
    await settle();
    expect(q.count).toBe(2);
    expect(db.status.pendingWrites).toBe(0);

    // Later writes work, and the next flush does not report old failures.
    poison = false;
    other.set("done", true);
    await db.flush();
    expect(other.get("done")).toBe(true);
    expect(other.get("text")).toBe("other");
    await db.close();
  });

  it("an engine that throws on a batch fails every write in it", async () => {
    const factory = await nodeEngineFactory();
    let fail = false;
    const throwing = {
      ...factory,
      create: (seed: Uint8Array, schemas: Uint8Array): WasmEngine => {
        const engine = factory.create(seed, schemas);
        const mutate = engine.mutate.bind(engine);
        engine.mutate = (batch, now) => {
          if (fail) throw new IbexError("ERR_STORAGE", "the device is full");
          return mutate(batch, now);
        };
        return engine;
      },
    };
    const db = await TestDB.over(await inProcessChannel(throwing, new MemoryStorage()));
    const errors = collectErrors(db);
    const a = db.create("/data/todos", Task, { text: "a" }, { key: "a" });
    await db.flush();
    fail = true;
    a.update({ text: "a2", prio: 3 });
    await expect(db.flush()).rejects.toMatchObject({ code: "ERR_STORAGE", path: "/data/todos/a" });
    expect(errors).toHaveLength(1);
    expect(a.get("text")).toBe("a");
    expect(a.has("prio")).toBe(false);
    expect(db.status.pendingWrites).toBe(0);
    fail = false;
    a.set("text", "a3");
    await db.flush();
    await db.close();
  });

  it("a full disk: flush() rejects with ERR_STORAGE, the writes stay unsaved (not lost), and are stored once there is room", async () => {
    // A log in memory that refuses to grow while `full`.
    let full = false;
    const bytes: number[] = [];
    const backend: LogBackend = {
      size: () => bytes.length,
      read: (offset, length) => new Uint8Array(bytes.slice(offset, offset + length)),
      append: (b) => {
        if (full) throw new Error("ENOSPC: no space left on device");
        bytes.push(...b);
      },
      flush: () => {},
      truncate: (n) => void bytes.splice(n),
    };
    const storage: StorageProvider = {
      kind: "memory",
      sessionSeed: async (fresh) => fresh(),
      readMeta: async () => null,
      writeMeta: async () => {},
      open: async (engine, repo) => engine.openBackend(repo, repo === "/data/todos" ? backend : emptyBackend()),
    };
    const db = await TestDB.over(await inProcessChannel(await nodeEngineFactory(), storage));
    collectErrors(db);
    const a = db.create("/data/todos", Task, { text: "stored" }, { key: "a" });
    await db.flush();
    expect(db.status.pendingWrites).toBe(0);

    full = true;
    a.set("text", "waiting for room");
    db.create("/data/todos", Task, { text: "me too" }, { key: "b" });
    await expect(db.flush()).rejects.toMatchObject({ code: "ERR_STORAGE" });
    // The engine holds the writes in memory; they are not durable, and the
    // status says so (a "saved" indicator must not show).
    expect(db.status.pendingWrites).toBe(2);
    expect(a.get("text")).toBe("waiting for room");
    expect(db.item("/data/todos/b")?.get("text")).toBe("me too");

    // Room again: the next flush writes everything that waited.
    full = false;
    await db.flush();
    expect(db.status.pendingWrites).toBe(0);
    await db.close();

    // Reopened from the same log: nothing was lost.
    const again = await TestDB.over(await inProcessChannel(await nodeEngineFactory(), storage));
    await again.open("/data/todos");
    expect(again.item("/data/todos/a")?.get("text")).toBe("waiting for room");
    expect(again.item("/data/todos/b")?.get("text")).toBe("me too");
    await again.close();
  });
});

function emptyBackend(): LogBackend {
  const bytes: number[] = [];
  return {
    size: () => bytes.length,
    read: (offset, length) => new Uint8Array(bytes.slice(offset, offset + length)),
    append: (b) => void bytes.push(...b),
    flush: () => {},
    truncate: (n) => void bytes.splice(n),
  };
}
