// Storage for the engine in a browser worker.
//
// OPFS: one file per repository under `ibex/<database>/`, and its
// checkpoint beside it (`.ckpt`), accessed through
// `FileSystemSyncAccessHandle`s that the WASM engine owns (reads and writes
// are synchronous; `flush()` is the durability point).
//
// IndexedDB (where sync access handles do not exist): the same log bytes,
// stored as chunks. The whole log is read at open; appends stay in memory
// until `flush`, which writes the new bytes as one chunk; `durable()`
// resolves when that transaction has committed.

import type { LoadReport } from "../wire/protocol.js";
import type { StorageProvider } from "./storage.js";
import type { LogBackend, WasmEngine } from "./wasm_engine.js";

/** `/data/todos` → `data~todos.log` (`~` never occurs in a path segment). */
function fileName(repo: string): string {
  return `${repo.split("/").filter(Boolean).join("~")}.log`;
}

export function opfsAvailable(): boolean {
  return (
    typeof FileSystemFileHandle !== "undefined" &&
    "createSyncAccessHandle" in FileSystemFileHandle.prototype &&
    typeof navigator !== "undefined" &&
    typeof navigator.storage?.getDirectory === "function"
  );
}

/** A sync access handle; retried while the worker of a page that is
 * reloading still holds it (only one handle per file may exist). Chromium
 * can take more than 2 s to release a dying worker's handles, and a new
 * leader opens `/sys/sessions` the moment it takes over: wait up to 10 s. */
async function syncHandle(file: FileSystemFileHandle): Promise<FileSystemSyncAccessHandle> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await file.createSyncAccessHandle();
    } catch (e) {
      if ((e as DOMException)?.name !== "NoModificationAllowedError" || attempt >= 40) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The file of a meta value (the session seed keeps its historical name). */
function metaFile(name: string): string {
  return name === "session.seed" ? name : `${name}.meta`;
}

export class OpfsProvider implements StorageProvider {
  readonly kind = "opfs";
  private handles: FileSystemSyncAccessHandle[] = [];

  constructor(private readonly name: string) {}

  private dirHandle: Promise<FileSystemDirectoryHandle> | null = null;

  /** The database's directory, looked up once (three async steps each time
   * were on the path of every start). */
  private dir(): Promise<FileSystemDirectoryHandle> {
    if (!this.dirHandle) {
      const p = (async () => {
        const root = await navigator.storage.getDirectory();
        const ibex = await root.getDirectoryHandle("ibex", { create: true });
        return ibex.getDirectoryHandle(this.name, { create: true });
      })();
      p.catch(() => (this.dirHandle = null));
      this.dirHandle = p;
    }
    return this.dirHandle;
  }

  async sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array> {
    const file = await (await this.dir()).getFileHandle("session.seed", { create: true });
    const h = await syncHandle(file);
    try {
      const seed = new Uint8Array(32);
      if (h.read(seed, { at: 0 }) === 32) return seed;
      const made = fresh();
      h.truncate(0);
      h.write(made, { at: 0 });
      h.flush();
      return made;
    } finally {
      h.close();
    }
  }

  async readMeta(name: string): Promise<Uint8Array | null> {
    try {
      const file = await (await this.dir()).getFileHandle(metaFile(name));
      const b = new Uint8Array(await (await file.getFile()).arrayBuffer());
      return b.length ? b : null;
    } catch {
      return null;
    }
  }

  async writeMeta(name: string, value: Uint8Array): Promise<void> {
    const file = await (await this.dir()).getFileHandle(metaFile(name), { create: true });
    const h = await syncHandle(file);
    try {
      h.truncate(0);
      h.write(value, { at: 0 });
      h.flush();
    } finally {
      h.close();
    }
  }

  async open(engine: WasmEngine, repo: string): Promise<LoadReport> {
    const dir = await this.dir();
    const h = await syncHandle(await dir.getFileHandle(fileName(repo), { create: true }));
    // Session certificates are read whole into the trust store: no checkpoint.
    const ck = repo === "/sys/sessions" ? undefined : await syncHandle(await dir.getFileHandle(`${fileName(repo)}.ckpt`, { create: true })).catch((e) => {
      h.close();
      throw e;
    });
    try {
      const report = engine.openOpfs!(repo, h, ck);
      this.handles.push(h);
      if (ck) this.handles.push(ck);
      return report;
    } catch (e) {
      h.close();
      ck?.close();
      throw e;
    }
  }

  close(): void {
    for (const h of this.handles) h.close();
    this.handles = [];
  }
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

class IdbLog implements LogBackend {
  private bytes: Uint8Array;
  private length: number;
  private persisted: number;

  constructor(
    private readonly owner: IdbProvider,
    private readonly repo: string,
    initial: Uint8Array,
    private chunks: number,
  ) {
    this.bytes = initial;
    this.length = initial.length;
    this.persisted = initial.length;
  }

  size(): number {
    return this.length;
  }

  read(offset: number, length: number): Uint8Array {
    return this.bytes.slice(offset, Math.min(this.length, offset + length));
  }

  append(data: Uint8Array): void {
    if (this.length + data.length > this.bytes.length) {
      const next = new Uint8Array(Math.max(this.bytes.length * 2, this.length + data.length, 4096));
      next.set(this.bytes.subarray(0, this.length));
      this.bytes = next;
    }
    this.bytes.set(data, this.length);
    this.length += data.length;
  }

  flush(): void {
    if (this.persisted === this.length) return;
    const chunk = this.bytes.slice(this.persisted, this.length);
    this.owner.write((store) => store.put(chunk, [this.repo, this.chunks++]));
    this.persisted = this.length;
  }

  truncate(length: number): void {
    this.length = Math.min(length, this.length);
    this.persisted = this.length;
    const all = this.bytes.slice(0, this.length);
    this.chunks = 1;
    this.owner.write((store) => {
      store.delete(IDBKeyRange.bound([this.repo, 0], [this.repo, Number.MAX_SAFE_INTEGER]));
      store.put(all, [this.repo, 0]);
    });
  }
}

export class IdbProvider implements StorageProvider {
  readonly kind = "indexeddb";
  private db: Promise<IDBDatabase>;
  private writes: Promise<void>[] = [];

  constructor(name: string) {
    const open = indexedDB.open(`ibex:${name}`, 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore("chunks");
      open.result.createObjectStore("meta");
    };
    this.db = request(open);
  }

  /** @internal queues a write transaction; `durable()` awaits it. */
  write(fn: (store: IDBObjectStore) => void): void {
    this.writes.push(
      this.db.then((db) => {
        const tx = db.transaction("chunks", "readwrite", { durability: "strict" });
        fn(tx.objectStore("chunks"));
        return done(tx);
      }),
    );
  }

  async durable(): Promise<void> {
    const pending = this.writes;
    this.writes = [];
    await Promise.all(pending);
  }

  async readMeta(name: string): Promise<Uint8Array | null> {
    const db = await this.db;
    const got = await request(db.transaction("meta").objectStore("meta").get(name));
    return got instanceof Uint8Array ? got : null;
  }

  async writeMeta(name: string, value: Uint8Array): Promise<void> {
    const db = await this.db;
    const tx = db.transaction("meta", "readwrite", { durability: "strict" });
    tx.objectStore("meta").put(value, name);
    await done(tx);
  }

  async sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array> {
    const db = await this.db;
    const got = await request(db.transaction("meta").objectStore("meta").get("session.seed"));
    if (got instanceof Uint8Array && got.length === 32) return got;
    const seed = fresh();
    const tx = db.transaction("meta", "readwrite", { durability: "strict" });
    tx.objectStore("meta").put(seed, "session.seed");
    await done(tx);
    return seed;
  }

  /** The chunks stored under `name`, as one log. */
  private async log(name: string): Promise<IdbLog> {
    const db = await this.db;
    const range = IDBKeyRange.bound([name, 0], [name, Number.MAX_SAFE_INTEGER]);
    const chunks = (await request(db.transaction("chunks").objectStore("chunks").getAll(range))) as Uint8Array[];
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    return new IdbLog(this, name, bytes, chunks.length);
  }

  async open(engine: WasmEngine, repo: string): Promise<LoadReport> {
    // The checkpoint under `<repo>#checkpoint` (`#` is never in a path).
    const checkpoint = repo === "/sys/sessions" ? undefined : await this.log(`${repo}#checkpoint`);
    return engine.openBackend(repo, await this.log(repo), checkpoint);
  }
}
