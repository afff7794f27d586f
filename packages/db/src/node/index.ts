// Running the engine in Node: in-process (same thread), with repositories
// in files (`{ dir }`) or in memory. The WASM module is the same one the
// browser worker loads; Node instantiates it synchronously from disk.

import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { EngineHost } from "../engine/host.js";
import { MemoryStorage, type StorageProvider } from "../engine/storage.js";
import type { SocketFactory, SocketLike } from "../engine/sync_client.js";
import type { EngineFactory, LogBackend, WasmEngine } from "../engine/wasm_engine.js";

export { MemoryStorage };
import { IbexError } from "../wire/errors.js";
import type { EngineChannel, FromEngine, ToEngine } from "../wire/protocol.js";

/** A log file, accessed synchronously; `flush` is fsync. */
export class NodeFileBackend implements LogBackend {
  private fd: number;
  private length: number;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, existsSync(path) ? "r+" : "w+");
    this.length = fstatSync(this.fd).size;
  }

  size(): number {
    return this.length;
  }

  read(offset: number, length: number): Uint8Array {
    const buf = new Uint8Array(Math.max(0, Math.min(length, this.length - offset)));
    let at = 0;
    while (at < buf.length) {
      const n = readSync(this.fd, buf, at, buf.length - at, offset + at);
      if (n === 0) break;
      at += n;
    }
    return buf.subarray(0, at);
  }

  append(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) at += writeSync(this.fd, bytes, at, bytes.length - at, this.length + at);
    this.length += bytes.length;
  }

  flush(): void {
    fsyncSync(this.fd);
  }

  truncate(length: number): void {
    ftruncateSync(this.fd, length);
    fsyncSync(this.fd);
    this.length = length;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** `<dir>/<type>/<name>.log` per repository and its checkpoint
 * `<name>.ckpt` beside it, `<dir>/session.seed`. */
export class NodeDirStorage implements StorageProvider {
  readonly kind = "files";
  private files: NodeFileBackend[] = [];

  constructor(private readonly dir: string) {}

  async readMeta(name: string): Promise<Uint8Array | null> {
    const p = join(this.dir, name === "session.seed" ? name : `${name}.meta`);
    return existsSync(p) ? new Uint8Array(readFileSync(p)) : null;
  }

  async writeMeta(name: string, value: Uint8Array): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, name === "session.seed" ? name : `${name}.meta`), value, { mode: 0o600 });
  }

  async sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array> {
    const p = join(this.dir, "session.seed");
    if (existsSync(p)) {
      const b = new Uint8Array(readFileSync(p));
      if (b.length === 32) return b;
    }
    mkdirSync(this.dir, { recursive: true });
    const seed = fresh();
    // The private key never leaves this directory; owner-only permissions.
    writeFileSync(p, seed, { mode: 0o600 });
    return seed;
  }

  async open(engine: WasmEngine, repo: string) {
    const base = join(this.dir, ...repo.split("/").filter(Boolean));
    const backend = new NodeFileBackend(`${base}.log`);
    this.files.push(backend);
    // Session certificates are read whole into the trust store: no checkpoint.
    const checkpoint = repo === "/sys/sessions" ? undefined : new NodeFileBackend(`${base}.ckpt`);
    if (checkpoint) this.files.push(checkpoint);
    return engine.openBackend(repo, backend, checkpoint);
  }

  close(): void {
    for (const f of this.files) f.close();
    this.files = [];
  }
}

let factory: EngineFactory | null = null;

/** Loads the WASM module once per process. */
export async function nodeEngineFactory(): Promise<EngineFactory> {
  if (factory) return factory;
  const here = dirname(fileURLToPath(import.meta.url));
  const glue = join(here, "..", "..", "wasm", "ibex_wasm.js");
  // Typed by wasm-bindgen's own declarations, so the compiler checks the
  // generated Engine against WasmEngine (as the worker does).
  const mod = (await import(glue)) as typeof import("../../wasm/ibex_wasm.js");
  mod.initSync({ module: new Uint8Array(readFileSync(join(here, "..", "..", "wasm", "ibex_wasm_bg.wasm"))) });
  factory = {
    create: (seed, schemas): WasmEngine => new mod.Engine(seed, schemas),
    newSessionSeed: () => mod.Engine.newSessionSeed(),
    version: () => mod.version(),
  };
  return factory;
}

/** The ws(s):// URL of a server's sync endpoint (`"http://host:8080"`,
 * `"ws://host:8080"` or a URL ending in `/sync`). Node has no page origin,
 * so relative URLs (`"/"`) are refused with a clear error. */
export function nodeSyncUrl(server: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new IbexError("ERR_CONFIG", `server \`${server}\` is not an absolute URL: in Node pass e.g. "http://127.0.0.1:8080"`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new IbexError("ERR_CONFIG", `server \`${server}\`: use http(s):// or ws(s)://`);
  if (!url.pathname.endsWith("/sync")) url.pathname = `${url.pathname.replace(/\/$/, "")}/sync`;
  return url.toString();
}

/** WebSockets in Node: the `ws` package (Node 20 has no stable built-in). */
async function nodeSockets(): Promise<SocketFactory> {
  const { WebSocket } = await import("ws");
  return (url) => new WebSocket(url) as unknown as SocketLike;
}

/** An engine in this thread, answering asynchronously like a worker would.
 * With `server`, it syncs with that ibex-server over a WebSocket. */
export async function inProcessChannel(f: EngineFactory, storage: StorageProvider, server?: string): Promise<EngineChannel> {
  let handler: (msg: FromEngine) => void = () => {};
  let closed = false;
  const syncUrl = server === undefined ? undefined : nodeSyncUrl(server);
  const sockets = syncUrl ? await nodeSockets() : undefined;
  // One tab only ("self"): every recipient is this thread, except for
  // messages meant for the other tabs (heads of this tab's own writes,
  // which re-applied here would redo every write still in flight).
  const server_ = new EngineHost(
    f,
    storage,
    (msg, to) => {
      if (typeof to === "object" && to.except === "self") return;
      queueMicrotask(() => !closed && handler(msg));
    },
    syncUrl,
    sockets,
  );
  server_.hasFollowers = () => false;
  return {
    post: (msg: ToEngine) => queueMicrotask(() => server_.handle(msg)),
    onMessage: (h) => {
      handler = h;
    },
    terminate: () => {
      closed = true;
    },
  };
}
