// Node clients syncing through a real ibex-server binary on 127.0.0.1.

import { afterEach, describe, expect, it } from "vitest";

import type { IbexDB, IbexError } from "../src/index.node.js";
import { Task, openDb, tempDir } from "./helpers.js";
import { type Server, startServer } from "./server.js";

const servers: Server[] = [];
const dbs: IbexDB[] = [];

afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close().catch(() => {});
  for (const s of servers.splice(0)) await s.stop("SIGKILL");
});

async function server(args: string[] = []) {
  const s = await startServer({ args });
  servers.push(s);
  return s;
}

async function client(url: string, name: string, dir?: string) {
  const db = await openDb({ name, server: url, storage: dir ? { dir } : "memory", repos: ["/data/todos"] });
  dbs.push(db);
  return db;
}

/** Waits until `check` holds (the event that proves it), or fails. */
async function until(what: string, check: () => boolean, ms = 10_000) {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("Node clients through ibex-server", () => {
  it("sync both ways and relay live edits", async () => {
    const s = await server();
    const a = await client(s.url, "a");
    const b = await client(s.url, "b");
    const milk = a.create("/data/todos", Task, { text: "Milk" });
    await a.sync(10_000);
    expect(a.status.synced).toBe(true);
    expect(a.status.unsynced).toBe(0);
    await b.sync(10_000);
    expect(b.item(milk.path)?.get("text")).toBe("Milk");
    // Live: b hears a's edit without asking.
    milk.set("done", true);
    await until("the relayed edit", () => b.item(milk.path)?.get("done") === true);
    b.create("/data/todos", Task, { text: "Bread" });
    await b.sync(10_000);
    await a.sync(10_000);
    expect(a.count("/data/todos")).toBe(2);
  });

  it("db.sync() never resolves against a server that is gone, and says why", async () => {
    const s = await server();
    const a = await client(s.url, "a", tempDir());
    a.create("/data/todos", Task, { text: "before" });
    await a.sync(10_000);
    await s.stop("SIGKILL");
    a.create("/data/todos", Task, { text: "after" });
    const err = await a.sync(1_500).then(
      () => null,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(err?.code).toBe("ERR_SYNC_TIMEOUT");
    await until("status.synced to turn false", () => !a.status.synced && a.status.unsynced > 0, 5_000);
  });

  it("refuses a relative server URL in Node with a clear error", async () => {
    await expect(openDb({ name: "rel", server: "/" })).rejects.toMatchObject({ code: "ERR_CONFIG" });
  });
});

describe("Node clients without a server", () => {
  it("survive an unreachable server: offline status, sync() rejects, writes stay local", async () => {
    const { freePort } = await import("./server.js");
    const port = await freePort();
    const db = await openDb({ name: "lonely", server: `http://127.0.0.1:${port}`, repos: ["/data/todos"] });
    dbs.push(db);
    const item = db.create("/data/todos", Task, { text: "offline" });
    // sync() waits, with reconnect attempts going on, and says why it gave up.
    const err = (await db.sync(500).catch((e: unknown) => e)) as IbexError;
    expect(err.code).toBe("ERR_SYNC_TIMEOUT");
    expect(err.message).toMatch(/offline|not connected|cannot connect/);
    expect(db.status.online).toBe(false);
    expect(db.status.synced).toBe(false);
    expect(db.item(item.path)?.get("text")).toBe("offline");
  });
});
