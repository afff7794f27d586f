// The engine side of the protocol, independent of where it runs: a
// dedicated worker in browsers, the same thread in Node. It owns the WASM
// `Engine`, opens storage for each repository, and answers the messages of
// every tab (wire/protocol.ts).

import { IbexError, toIbexError } from "../wire/errors.js";
import type { FromEngine, LoadReport, Recipient, ToEngine } from "../wire/protocol.js";
import type { HistoryRequest } from "../wire/history.js";
import type { StorageProvider } from "./storage.js";
import { type SocketFactory, type SocketLike, SyncClient } from "./sync_client.js";
import type { EngineEvent, EngineFactory, WasmEngine } from "./wasm_engine.js";

/** The repository of session certificates (rust/core/src/trust.rs). */
const SESSIONS = "/sys/sessions";

/** Writes become durable on their own this long after the last batch, so
 * an app that never calls `flush()` loses at most this window. */
export const AUTO_FLUSH_MS = 100;

/** Heads sent with `opened`; the others follow in `moreHeads`. */
const FIRST_HEADS = 1_000;

export class EngineHost {
  private engine: WasmEngine | null = null;
  private autoFlush: ReturnType<typeof setTimeout> | null = null;
  private sync: SyncClient | null = null;
  private openRepos = new Map<string, LoadReport>();
  /** Last batch handled per tab, for `durable` notices. */
  private lastSeq = new Map<string, number>();
  /** Resolves once `/sys/sessions` is open in the engine. */
  private sessionsReady: Promise<void> = Promise.resolve();
  /** A login request waiting for the server's answer. */
  private pendingLogin: { kind: "login" | "redeem" | "loginInfo"; resolve: (v: unknown) => void; reject: (e: Error) => void } | null = null;

  constructor(
    private readonly factory: EngineFactory,
    private readonly storage: StorageProvider,
    /** Delivers a message to one tab, or to all tabs (but one). */
    private readonly deliver: (msg: FromEngine, to: Recipient) => void,
    /** ws(s):// URL of the server's sync endpoint, if any. */
    private readonly syncUrl?: string,
    /** Opens a WebSocket (the runtime's, or the `ws` package in Node). */
    private readonly socket: SocketFactory = (url) => new WebSocket(url) as unknown as SocketLike,
  ) {}

  /** The tab whose message is being handled. */
  private from = "self";

  /** Whether any other tab may be listening. Without followers, the heads
   * of this tab's writes (whole values: a long text on every keystroke) are
   * neither encoded nor posted. */
  hasFollowers: () => boolean = () => true;

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
    const { code, message } = toIbexError(e);
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

  private requireSync(): SyncClient {
    if (!this.sync) throw new IbexError("ERR_CONFIG", "no server configured: pass `server` to IbexDB.open");
    return this.sync;
  }

  private whenWelcomed(sync: SyncClient, timeoutMs = 10_000): Promise<void> {
    const t0 = Date.now();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (sync.welcomed) resolve();
        else if (Date.now() - t0 > timeoutMs) reject(new IbexError("ERR_SYNC_TIMEOUT", "the server did not accept the new session in time"));
        else setTimeout(check, 50);
      };
      check();
    });
  }

  /** Logging out: a new anonymous session key, kept like the first one. */
  private async rotateSession(engine: WasmEngine): Promise<void> {
    const seed = this.factory.newSessionSeed();
    await this.storage.writeMeta("session.seed", seed);
    engine.setSession(seed);
    this.announceUser(engine);
    this.sync?.reconnect();
  }

  private announceUser(engine: WasmEngine): void {
    const writable: Record<string, boolean> = {};
    for (const repo of this.openRepos.keys()) writable[repo] = engine.canWrite(repo);
    this.deliver({ t: "user", user: engine.user, sessionId: engine.sessionId, writable }, { all: true });
  }

  /** Connection events from the engine (see SyncClient). */
  private engineEvents(events: EngineEvent[]): void {
    const engine = this.engine;
    if (!engine) return;
    for (const ev of events) {
      switch (ev.t) {
        case "root":
          void this.storage.writeMeta("root", new TextEncoder().encode(ev.root)).catch((e) => this.fail(undefined, e, { all: true }));
          break;
        case "welcome":
          this.announceUser(engine);
          if (this.pendingLogin?.kind === "redeem") {
            this.pendingLogin.resolve(engine.user);
            this.pendingLogin = null;
          }
          break;
        case "loginSent":
          if (this.pendingLogin?.kind === "login") {
            this.pendingLogin.resolve(ev.email);
            this.pendingLogin = null;
          }
          break;
        case "loginIs":
          if (this.pendingLogin?.kind === "loginInfo") {
            this.pendingLogin.resolve(ev.email);
            this.pendingLogin = null;
          }
          break;
        case "error":
        case "rejected": {
          const err = toIbexError({ code: ev.code, message: ev.repo ? `${ev.repo}: ${ev.message}` : ev.message });
          if (this.pendingLogin && ev.repo === "") {
            this.pendingLogin.reject(err);
            this.pendingLogin = null;
          } else {
            this.fail(undefined, err, { all: true });
          }
          break;
        }
      }
    }
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
        this.send({ t: "ready", sessionId: this.engine.sessionId, engine: this.factory.version(), storage: this.storage.kind, user: this.engine.user });
        return;
      }
      // Both reads at once: they are on the path of every start.
      const rootRead = this.storage.readMeta("root");
      // (Awaited below; not an unhandled rejection if the seed fails first.)
      rootRead.catch(() => {});
      const seed = await this.storage.sessionSeed(() => this.factory.newSessionSeed());
      const engine = this.factory.create(seed, msg.schemas);
      // The server root this database trusts: remembered from the first
      // connection; a server with another root is refused.
      const root = await rootRead;
      if (root) engine.trustRoot(new TextDecoder().decode(root));
      this.engine = engine;
      this.send({ t: "ready", sessionId: engine.sessionId, engine: this.factory.version(), storage: this.storage.kind, user: engine.user });
      // Session certificates: needed to verify every commit from elsewhere,
      // so sync and imports wait for them. Not on the path to "ready": after
      // a leader hand-over the file can stay locked by the old leader's
      // worker for seconds.
      this.sessionsReady = this.storage.open(engine, SESSIONS).then(() => undefined);
      this.sessionsReady.catch((e) => this.fail(undefined, e, { all: true }));
      if (this.syncUrl) {
        this.sync = new SyncClient(
          () => this.engine!,
          this.syncUrl,
          {
            changed: () => {
              this.sendChanged();
              this.scheduleFlush();
            },
            status: (s) => this.deliver({ t: "syncStatus", ...s }, { all: true }),
            engine: (events) => this.engineEvents(events),
          },
          this.socket,
        );
        const sync = this.sync;
        this.sessionsReady.then(() => sync.start(), () => {});
      }
      return;
    }
    const engine = this.engine;
    if (!engine) throw new IbexError("ERR_INTERNAL", `\`${msg.t}\` reached the engine before \`init\``);
    switch (msg.t) {
      case "open":
        try {
          // A repository another tab opened already is shared, not reopened
          // (its OPFS file has one handle, held by this engine).
          const known = this.openRepos.get(msg.repo);
          const report = known ?? (await this.storage.open(engine, msg.repo));
          // The first heads at once, then the rest: the tab shows a
          // query's first rows while the others are listed.
          const total = engine.itemCount(msg.repo);
          const heads = engine.heads(msg.repo, 0, FIRST_HEADS);
          this.send({ t: "opened", id: msg.id, repo: msg.repo, report, heads, total, writable: engine.canWrite(msg.repo) });
          if (total > FIRST_HEADS) this.send({ t: "moreHeads", id: msg.id, repo: msg.repo, heads: engine.heads(msg.repo, FIRST_HEADS, total - FIRST_HEADS) });
          if (!known) {
            this.openRepos.set(msg.repo, report);
            // Opening queued a round when connected: send it.
            this.sync?.kick();
          }
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "mutate": {
        let bytes: Uint8Array;
        try {
          // One outcome per write, whatever the batch holds (a write the
          // engine cannot read fails alone; see batch.rs).
          bytes = engine.mutate(msg.batch, Date.now());
        } catch (e) {
          // Nothing of the batch was applied: every write in it failed.
          const { code, message } = toIbexError(e);
          this.send({ t: "batchFailed", seq: msg.seq, code, message });
          break;
        }
        this.lastSeq.set(this.from, msg.seq);
        this.send({ t: "outcomes", seq: msg.seq, bytes });
        if (this.from !== "self" || this.hasFollowers()) {
          const mutated = engine.mutatedHeads();
          if (mutated.length > 1) this.deliver({ t: "changed", bytes: mutated }, { all: true, except: this.from });
        }
        this.sendChanged();
        this.sync?.kick();
        this.scheduleFlush();
        break;
      }
      case "network":
        this.sync?.setNetwork(msg.online);
        break;
      case "sync":
        try {
          await this.requireSync().whenSynced(msg.timeoutMs);
          this.send({ t: "done", id: msg.id });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "login":
      case "redeem":
      case "loginInfo":
        try {
          const sync = this.requireSync();
          // Right after a page load the connection may still be opening.
          await this.whenWelcomed(sync);
          if (msg.t === "redeem" && engine.user) {
            // This session belongs to someone: a new session for the new user.
            await this.rotateSession(engine);
            await this.whenWelcomed(sync);
          }
          if (this.pendingLogin) this.pendingLogin.reject(new IbexError("ERR_LOGIN", "superseded by a newer login request"));
          const answer = new Promise((resolve, reject) => (this.pendingLogin = { kind: msg.t, resolve, reject }));
          if (msg.t === "login") engine.login(msg.email);
          else if (msg.t === "redeem") engine.redeem(msg.token);
          else engine.loginInfo(msg.token);
          sync.kick();
          const value = await answer;
          this.send({ t: "done", id: msg.id, value });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
      case "logout":
        try {
          if (this.sync?.welcomed) {
            engine.logout();
            this.sync.kick();
          }
          await this.rotateSession(engine);
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
      case "stats":
        this.send({ t: "done", id: msg.id, value: { engineMemoryBytes: engine.memoryBytes } });
        break;
      case "history":
        try {
          const value = this.history(engine, msg.req);
          if (msg.req.op === "revert" || msg.req.op === "restore") {
            // New commits: heads first (the caller's promise resolves on an
            // updated mirror), then to the server and the disk like writes.
            this.sendChanged();
            this.sync?.kick();
            this.scheduleFlush();
          }
          this.send({ t: "done", id: msg.id, value });
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
          await this.sessionsReady;
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
          // A checkpoint of everything: the next open reads no log.
          engine.checkpoint();
          await this.storage.durable?.();
          this.storage.close?.();
          // The engine's memory goes back to the module: in Node every
          // database shares one WebAssembly instance, and an engine never
          // freed kept all it held (100k items: ~31 MB per open and close).
          this.engine = null;
          engine.free();
          this.send({ t: "done", id: msg.id });
        } catch (e) {
          this.fail(msg.id, e);
        }
        break;
    }
  }

  /** Answers one history request (wire/history.ts). */
  private history(engine: WasmEngine, req: HistoryRequest): unknown {
    switch (req.op) {
      case "history":
        return engine.history(req.repo, req.key, req.before, req.limit);
      case "itemAt":
        return engine.itemAt(req.repo, req.key, req.time, req.commit);
      case "snapshotAt":
        return engine.snapshotAt(req.repo, req.time);
      case "playback":
        return engine.playback(req.repo, req.from, req.to);
      case "conflicts":
        return engine.conflicts(req.repo, req.key);
      case "audit": {
        const f = req.filter;
        return engine.audit(req.repo, f.sessions, f.user, f.since, f.until);
      }
      case "revert": {
        const f = req.filter;
        return engine.revert(req.repo, req.commits, f.sessions, f.user, f.since, f.until, Date.now());
      }
      case "restore":
        return engine.restore(req.repo, req.key, req.commit, Date.now());
    }
  }
}
