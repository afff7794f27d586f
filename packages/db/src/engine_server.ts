// The engine side of the protocol, independent of where it runs: a
// dedicated worker in browsers, the same thread in Node. It owns the WASM
// `Engine`, opens storage for each repository, and answers messages.

import type { FromEngine, LoadReport, Recipient, ToEngine } from "./protocol.js";
import { SyncClient } from "./sync_client.js";

/** The parts of the wasm-bindgen `Engine` the server uses. */
export interface WasmEngine {
  readonly sessionId: string;
  openBackend(repo: string, backend: LogBackend): LoadReport;
  openMemory(repo: string): LoadReport;
  openOpfs?(repo: string, handle: FileSystemSyncAccessHandle): LoadReport;
  heads(repo: string): Uint8Array;
  mutate(batch: Uint8Array, now: number): Uint8Array;
  mutatedHeads(): Uint8Array;
  changed(): Uint8Array;
  flush(): void;
  history(repo: string, key: string): unknown[];
  export(repo: string): Uint8Array;
  syncStart(repo: string, seed: number): Uint8Array;
  syncHandle(frame: Uint8Array): Uint8Array;
  readonly synced: boolean;
  pushFrames(): Uint8Array;
  syncReset(): void;
  import(repo: string, image: Uint8Array): { added: number; rejected: number };
  close(repo: string): void;
}

/** Synchronous file-like storage (rust/wasm/src/js_storage.rs). */
export interface LogBackend {
  size(): number;
  read(offset: number, length: number): Uint8Array;
  append(bytes: Uint8Array): void;
  flush(): void;
  truncate(length: number): void;
}

/** Where an engine keeps its repositories and its session seed. */
export interface StorageProvider {
  /** `"opfs"`, `"indexeddb"`, `"files"` or `"memory"`, for `db.status`. */
  readonly kind: string;
  /** The session's private seed, created (with `fresh`) and kept on first use. */
  sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array>;
  /** Opens repository `repo` in `engine`, returning its load report. */
  open(engine: WasmEngine, repo: string): Promise<LoadReport>;
  /** Resolves once everything flushed so far is durable. */
  durable?(): Promise<void>;
  close?(): void;
}

export interface EngineFactory {
  create(seed: Uint8Array, schemas: Uint8Array): WasmEngine;
  newSessionSeed(): Uint8Array;
  /** The engine build's version, reported by the WASM module itself. */
  version(): string;
}

/** Nothing persists; a new session each time. */
export class MemoryStorage implements StorageProvider {
  readonly kind = "memory";

  async sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array> {
    return fresh();
  }

  async open(engine: WasmEngine, repo: string): Promise<LoadReport> {
    return engine.openMemory(repo);
  }
}

/** Writes become durable on their own this long after the last batch, so
 * an app that never calls `flush()` loses at most this window. */
export const AUTO_FLUSH_MS = 100;

export class EngineServer {
  private engine: WasmEngine | null = null;
  private autoFlush: ReturnType<typeof setTimeout> | null = null;
  private sync: SyncClient | null = null;
  private openRepos = new Map<string, LoadReport>();
  /** Last batch handled per tab, for `durable` notices. */
  private lastSeq = new Map<string, number>();

  constructor(
    private readonly factory: EngineFactory,
    private readonly storage: StorageProvider,
    /** Delivers a message to one tab, or to all tabs (but one). */
    private readonly deliver: (msg: FromEngine, to: Recipient) => void,
    /** ws(s):// URL of the server's sync endpoint, if any. */
    private readonly syncUrl?: string,
  ) {}

  /** The tab whose message is being handled. */
  private from = "self";

  private send(msg: FromEngine): void {
    this.deliver(msg, this.from);
  }

  private sendChanged(): void {
    const changed = this.engine?.changed();
    if (changed && changed.length > 1) this.deliver({ t: "changed", bytes: changed }, { all: true });
  }

  /** After a flush: tell every tab how far its writes are durable. */
  private announceDurable(): void {
    for (const [tab, seq] of this.lastSeq) this.deliver({ t: "durable", seq }, tab);
  }

  private fail(id: number | undefined, e: unknown, to: Recipient = this.from): void {
    const code = (e as { code?: string })?.code ?? "ERR_WORKER";
    const message = e instanceof Error ? e.message : String(e);
    this.deliver({ t: "error", ...(id !== undefined ? { id } : {}), code, message }, to);
  }

  /** Messages are handled one at a time, in order. */
  private queue: Promise<void> = Promise.resolve();

  private scheduleFlush(): void {
    if (this.autoFlush) return;
    this.autoFlush = setTimeout(() => {
      this.autoFlush = null;
      // Queued behind any message being processed, like a flush request.
      this.queue = this.queue
        .then(async () => {
          this.engine?.flush();
          await this.storage.durable?.();
          this.announceDurable();
        })
        .catch((e) => this.fail(undefined, e));
    }, AUTO_FLUSH_MS);
  }

  /** Handles a message from tab `from` (messages are processed in order). */
  handle(msg: ToEngine, from = "self"): void {
    this.queue = this.queue
      .then(() => {
        this.from = from;
        return this.process(msg);
      })
      .catch((e) => this.fail(undefined, e, from));
  }

  private async process(msg: ToEngine): Promise<void> {
    if (msg.t === "init") {
      if (this.engine) {
        // Another tab joining the engine this tab's leader already runs.
        this.send({ t: "ready", sessionId: this.engine.sessionId, engine: this.factory.version(), storage: this.storage.kind });
        return;
      }
      const seed = await this.storage.sessionSeed(() => this.factory.newSessionSeed());
      this.engine = this.factory.create(seed, msg.schemas);
      this.send({ t: "ready", sessionId: this.engine.sessionId, engine: this.factory.version(), storage: this.storage.kind });
      if (this.syncUrl) {
        this.sync = new SyncClient(() => this.engine!, this.syncUrl, () => [...this.openRepos.keys()], {
          changed: () => {
            this.sendChanged();
            this.scheduleFlush();
          },
          status: (s) => this.deliver({ t: "syncStatus", ...s }, { all: true }),
        });
        this.sync.start();
      }
      return;
    }
    const engine = this.engine;
    if (!engine) throw Object.assign(new Error("the engine is not initialized"), { code: "ERR_WORKER" });
    switch (msg.t) {
      case "open":
        try {
          // A repository another tab opened already is shared, not reopened
          // (its OPFS file has one handle, held by this engine).
          const known = this.openRepos.get(msg.repo);
          const report = known ?? (await this.storage.open(engine, msg.repo));
          const heads = engine.heads(msg.repo);
          this.send({ t: "opened", id: msg.id, repo: msg.repo, report, heads });
          if (!known) {
            this.openRepos.set(msg.repo, report);
            this.sync?.repoOpened(msg.repo);
          }
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "mutate": {
        const bytes = engine.mutate(msg.batch, Date.now());
        this.lastSeq.set(this.from, msg.seq);
        this.send({ t: "outcomes", seq: msg.seq, bytes });
        const mutated = engine.mutatedHeads();
        if (mutated.length > 1) this.deliver({ t: "changed", bytes: mutated }, { all: true, except: this.from });
        this.sendChanged();
        this.sync?.afterMutate();
        this.scheduleFlush();
        break;
      }
      case "network":
        this.sync?.setNetwork(msg.online);
        break;
      case "sync":
        try {
          if (!this.sync) throw Object.assign(new Error("no server configured: pass `server` to IbexDB.open"), { code: "ERR_WORKER" });
          await this.sync.whenSynced(msg.timeoutMs);
          this.send({ t: "done", id: msg.id });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "flush":
        try {
          engine.flush();
          await this.storage.durable?.();
          this.announceDurable();
          this.send({ t: "done", id: msg.id });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "history":
        try {
          this.send({ t: "done", id: msg.id, value: engine.history(msg.repo, msg.key) });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "export":
        try {
          this.send({ t: "done", id: msg.id, value: engine.export(msg.repo) });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "import":
        try {
          const value = engine.import(msg.repo, msg.image);
          // Heads first, so the caller's promise resolves on an updated mirror.
          this.sendChanged();
          this.send({ t: "done", id: msg.id, value });
          this.scheduleFlush();
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "close":
        if (this.from !== "self") {
          // A follower tab leaving: the engine keeps serving the others.
          this.lastSeq.delete(this.from);
          this.send({ t: "done", id: msg.id });
          break;
        }
        try {
          this.sync?.stop();
          if (this.autoFlush) clearTimeout(this.autoFlush);
          this.autoFlush = null;
          engine.flush();
          await this.storage.durable?.();
          this.storage.close?.();
          this.send({ t: "done", id: msg.id });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
    }
  }
}
