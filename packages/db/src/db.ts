// `IbexDB`: the synchronous, in-memory face of a database whose truth lives
// in the engine. Reads never wait; writes apply at once, reach the engine
// in one batch per microtask, and `flush()` resolves only after the
// engine's storage flush.

import { type HeadRecord, type Mutation, headCount, readHeads, readOutcomes, writeMutations, writeSchemas } from "./codec.js";
import { IbexError, fromEngine } from "./errors.js";
import { Item } from "./item.js";
import type { EngineChannel, FromEngine, HistoryEntry, LoadReport } from "./protocol.js";
import { Query, type QueryOptions } from "./query.js";
import type { User } from "./protocol.js";
import { type Fields, type InitData, type Schema, checkRepoPath, checkSegment, splitItemPath, toWireSchema } from "./schema.js";

export type Phase = "starting" | "loading" | "ready" | "error" | "closed";

export interface RepoStatus {
  phase: "loading" | "ready" | "error";
  /** Items applied to the in-memory mirror so far, of `total`. */
  loaded: number;
  total: number;
  report?: LoadReport;
  error?: IbexError;
}

export interface Status {
  phase: Phase;
  /** Items loaded so far and expected, over all repositories being opened. */
  loaded: number;
  total: number;
  repos: Readonly<Record<string, RepoStatus>>;
  /** Writes not yet acknowledged by the engine. */
  pendingWrites: number;
  error?: IbexError;
  sessionId?: string;
  /** Version reported by the WASM engine, once it runs. */
  engine?: string;
  /** Where data is kept: "opfs", "indexeddb", "files" or "memory". */
  storage?: string;
  /** Connected to the sync server. */
  online: boolean;
  /** Every open repository holds the same commits as the server. */
  synced: boolean;
  /** When the replica was last in sync with the server (ms since epoch). */
  lastSync: number | null;
  /** Local commits the server has not yet acknowledged as durable. */
  unsynced: number;
  /** This tab runs the engine (the others follow it); see multi-tab in the README. */
  leader: boolean;
  /** The logged-in user, or null for an anonymous session. */
  user: User | null;
}

export interface EngineStats {
  /** Bytes of WebAssembly memory of the engine (in the worker, or in process in Node). */
  engineMemoryBytes: number;
}

export interface OpenOptions {
  /** Database name: one engine and one storage area per name. */
  name: string;
  schemas: readonly Schema[];
  /** Repositories to load before `open` resolves. */
  repos?: readonly string[];
}

/** Heads are applied to the mirror in slices so no task runs long. */
const SLICE = 2_000;

function randomKey(): string {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  let s = "";
  for (const x of b) s += "0123456789abcdefghijklmnopqrstuvwxyz"[x % 36];
  return s;
}

export class Database {
  readonly name: string;
  private schemas = new Map<string, Schema>();
  private latest = new Map<string, Schema>();
  private items = new Map<string, Map<string, Item>>();
  /** Every item by full path: `item(path)` without parsing the path again. */
  private byPath = new Map<string, Item>();
  private keysCache = new Map<string, string[]>();
  private repoStatus = new Map<string, RepoStatus>();
  private opening = new Map<string, Promise<void>>();
  private queries = new Set<Query>();
  private pathWatchers = new Map<string, Set<() => void>>();
  private shared = new Map<string, { query: Query<any>; users: number; timer: ReturnType<typeof setTimeout> | null }>();
  private outbox = new Map<Item, true>();
  private outboxScheduled = false;
  /** Settles once every batch taken from the outbox so far was posted (a
   * batch for a repository that is still loading waits for it). */
  private posted: Promise<void> = Promise.resolve();
  private deferred = 0;
  private notifyQueue = new Set<Query>();
  private notifyScheduled = false;
  private seq = 0;
  private inFlight = new Map<number, Item[]>();
  /** Items over all of `inFlight` (kept, not summed: status updates on
   * every acknowledgement would otherwise cost O(batches in flight)). */
  private inFlightItems = 0;
  /** Batches not yet durable, by sequence number: re-sent to a new engine
   * after a leader hand-over (re-applying a batch changes nothing). */
  private unsure = new Map<number, Uint8Array>();
  private schemaBytes: Uint8Array | null = null;
  private requests = new Map<number, { resolve: (v: unknown) => void; reject: (e: IbexError) => void; msg: import("./protocol.js").ToEngine }>();
  private nextRequest = 1;
  private statusListeners = new Set<(s: Status) => void>();
  private errorListeners = new Set<(e: IbexError) => void>();
  private state: Status;
  private closed = false;
  private readyWaiter: { resolve: () => void; reject: (e: IbexError) => void } | null = null;
  /** Repositories this session may not write (the server's rules). */
  private readOnly = new Set<string>();

  /** @internal use `IbexDB.open`. */
  constructor(
    private readonly channel: EngineChannel,
    opts: OpenOptions,
  ) {
    this.name = opts.name;
    for (const s of opts.schemas) {
      this.schemas.set(s.id, s);
      const cur = this.latest.get(s.ns);
      if (!cur || cur.version < s.version) this.latest.set(s.ns, s);
    }
    this.state = { phase: "starting", loaded: 0, total: 0, repos: {}, pendingWrites: 0, online: false, synced: false, lastSync: null, unsynced: 0, leader: false, user: null };
    channel.onMessage((m) => this.receive(m));
  }

  /** @internal */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.readyWaiter = { resolve, reject };
      this.schemaBytes = writeSchemas([...this.schemas.values()].map(toWireSchema));
      this.channel.post({ t: "init", schemas: this.schemaBytes.slice() });
    });
  }

  // ---- status -------------------------------------------------------------

  get status(): Status {
    return this.state;
  }

  /** Called on every status change (phase, progress, errors, pending writes). */
  onStatus(listener: (s: Status) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Errors that happen after the call that caused them returned (a write
   * the engine rejected, a repository that failed to load). */
  onError(listener: (e: IbexError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  private updateStatus(patch: Partial<Status>): void {
    const repos = Object.fromEntries(this.repoStatus);
    let loaded = 0;
    let total = 0;
    let loading = false;
    for (const r of this.repoStatus.values()) {
      loaded += r.loaded;
      total += r.total;
      loading ||= r.phase === "loading";
    }
    const base = this.state.phase === "starting" || this.state.phase === "error" || this.state.phase === "closed" ? this.state.phase : loading ? "loading" : "ready";
    this.state = { ...this.state, phase: base, loaded, total, repos, pendingWrites: this.countPending(), ...patch };
    for (const l of [...this.statusListeners]) l(this.state);
  }

  private countPending(): number {
    return this.outbox.size + this.inFlightItems;
  }

  private emitError(e: IbexError): void {
    if (this.errorListeners.size === 0) console.error(e);
    for (const l of [...this.errorListeners]) l(e);
  }

  // ---- repositories -------------------------------------------------------

  /** Loads a repository (once); resolves when all its items are in memory. */
  open(repo: string): Promise<void> {
    checkRepoPath(repo);
    this.assertOpen();
    let p = this.opening.get(repo);
    if (!p) {
      this.repoStatus.set(repo, { phase: "loading", loaded: 0, total: 0 });
      this.updateStatus({});
      p = this.request({ t: "open", id: 0, repo }).then(() => undefined);
      p.catch((e: IbexError) => {
        this.repoStatus.set(repo, { phase: "error", loaded: 0, total: 0, error: e });
        this.updateStatus({});
        this.emitError(e);
      });
      this.opening.set(repo, p);
    }
    return p;
  }

  isLoaded(repo: string): boolean {
    return this.repoStatus.get(repo)?.phase === "ready";
  }

  private repoItems(repo: string): Map<string, Item> {
    let m = this.items.get(repo);
    if (!m) {
      m = new Map();
      this.items.set(repo, m);
    }
    return m;
  }

  // ---- items --------------------------------------------------------------

  /** Creates an item synchronously (key generated unless given). Throws,
   * changing nothing, if the values do not fit the schema. */
  create<F extends Fields>(repo: string, schema: Schema<F>, values: InitData<F>, opts: { key?: string } = {}): Item<F> {
    checkRepoPath(repo);
    this.assertOpen();
    this.assertWritable(repo);
    this.assertKnown(schema);
    const key = opts.key ?? randomKey();
    checkSegment(`${repo}/${key}`, key, "item key");
    const existing = this.repoItems(repo).get(key);
    if (existing && !existing.isDeleted) throw new IbexError("ERR_PATH", `Item \`${repo}/${key}\` already exists`);
    Item.checkNew(schema, values as Record<string, unknown>);
    if (!this.opening.has(repo)) void this.open(repo);
    const item = (existing as unknown as Item<F> | undefined) ?? new Item<F>(this, repo, key, schema);
    if (existing) existing.restore();
    const changes = item.initialize(values as Record<string, unknown>);
    this.addItem(item as unknown as Item);
    this.enqueue(item as unknown as Item, changes);
    this.itemChanged(item as unknown as Item);
    return item;
  }

  /** The item at `path`, or undefined if it does not exist (or its
   * repository has not loaded yet: see `open`). Synchronous. */
  item<F extends Fields = Fields>(path: string): Item<F> | undefined {
    const hit = this.byPath.get(path);
    if (hit) return hit as unknown as Item<F>;
    const { repo, key } = splitItemPath(path);
    if (!this.opening.has(repo) && !this.closed) void this.open(repo);
    return this.items.get(repo)?.get(key) as Item<F> | undefined;
  }

  /** Number of items in a loaded repository (including soft-deleted ones), O(1). */
  count(repo: string): number {
    return this.items.get(repo)?.size ?? 0;
  }

  /** Every item of a loaded repository (including soft-deleted ones). */
  keys(repo: string): string[] {
    let k = this.keysCache.get(repo);
    if (!k) {
      k = [...(this.items.get(repo)?.keys() ?? [])];
      this.keysCache.set(repo, k);
    }
    // A copy: callers may sort or change it.
    return k.slice();
  }

  private addItem(item: Item): void {
    this.repoItems(item.repo).set(item.key, item);
    this.byPath.set(item.path, item);
    this.keysCache.delete(item.repo);
  }

  /** A live query (see `QueryOptions`). Starts loading its repository. */
  query<F extends Fields>(opts: QueryOptions<F>): Query<F> {
    this.assertOpen();
    const q = new Query<F>(this, opts);
    const repo = q.repo;
    checkRepoPath(repo);
    this.queries.add(q as unknown as Query);
    if (!this.opening.has(repo)) void this.open(repo);
    if (typeof opts.source === "string") q.insertMany((this.items.get(repo)?.values() ?? []) as Iterable<Item<F>>);
    else q.insertMany(opts.source.results as Item<F>[]);
    return q;
  }

  /** Calls `listener` whenever the item at `path` changes — including when
   * it first appears (loaded, created here, or arriving from elsewhere). */
  watchItem(path: string, listener: () => void): () => void {
    let set = this.pathWatchers.get(path);
    if (!set) {
      set = new Set();
      this.pathWatchers.set(path, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.pathWatchers.delete(path);
    };
  }

  /** A live query shared by everyone asking with the same `key` (e.g. the
   * serialized options). Each `retain()` must be paired with its release;
   * a query nobody retains closes after `gcMs`, so one created during a
   * render that never commits does not leak. */
  sharedQuery<F extends Fields>(key: string, opts: QueryOptions<F>, gcMs = 1_000): { query: Query<F>; retain(): () => void } {
    let entry = this.shared.get(key);
    if (!entry) {
      const e = { query: this.query(opts) as Query<any>, users: 0, timer: null as ReturnType<typeof setTimeout> | null };
      entry = e;
      this.shared.set(key, e);
    }
    const e = entry;
    const collect = () => {
      if (e.timer) clearTimeout(e.timer);
      e.timer = setTimeout(() => {
        if (e.users === 0 && this.shared.get(key) === e) {
          this.shared.delete(key);
          e.query.close();
        }
      }, gcMs);
    };
    if (e.users === 0) collect();
    return {
      query: e.query as Query<F>,
      retain: () => {
        e.users++;
        if (e.timer) clearTimeout(e.timer);
        e.timer = null;
        let released = false;
        return () => {
          if (released) return;
          released = true;
          if (--e.users === 0) collect();
        };
      },
    };
  }

  /** Number of live queries (for tests and diagnostics). */
  get liveQueries(): number {
    return this.queries.size;
  }

  /** Who changed what, when (from the signed commit graph). */
  async history(path: string): Promise<HistoryEntry[]> {
    const { repo, key } = splitItemPath(path);
    await this.open(repo);
    await this.flushOutbox();
    return (await this.request({ t: "history", id: 0, repo, key })) as HistoryEntry[];
  }

  /** What the engine holds in memory: its WebAssembly linear memory, where
   * the commit graphs and values of every open repository live (the
   * synchronous mirror on this thread is on top of that). */
  async stats(): Promise<EngineStats> {
    this.assertOpen();
    return (await this.request({ t: "stats", id: 0 })) as EngineStats;
  }

  /** The repository as a log image (Ibex's on-disk format): a backup, or a
   * way to carry data to another replica with `import`. */
  async export(repo: string): Promise<Uint8Array> {
    await this.open(repo);
    await this.flushOutbox();
    return (await this.request({ t: "export", id: 0, repo })) as Uint8Array;
  }

  /** Merges a log image made by `export` (here or on another replica).
   * Every commit is decoded strictly and its signature verified; bad ones
   * are skipped and counted. Items change as if the commits had synced. */
  async import(repo: string, image: Uint8Array): Promise<{ added: number; rejected: number }> {
    await this.open(repo);
    await this.flushOutbox();
    return (await this.request({ t: "import", id: 0, repo, image })) as { added: number; rejected: number };
  }

  /** Resolves once every write made so far is durable on this device. */
  async flush(): Promise<void> {
    this.assertOpen();
    await this.flushOutbox();
    await this.request({ t: "flush", id: 0 });
  }

  /** Resolves once a fresh round with the server completed for every open
   * repository — its commits are here — and every write made so far is
   * acknowledged by the server as durable. Rejects with ERR_SYNC_TIMEOUT
   * (saying why) if that takes longer than `timeoutMs`: offline, a frozen
   * or partitioned server, or writes the server refused. */
  async sync(timeoutMs = 30_000): Promise<void> {
    this.assertOpen();
    await this.flushOutbox();
    await this.request({ t: "sync", id: 0, timeoutMs });
  }

  /** Flushes, then stops the engine. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushOutbox();
    await this.request({ t: "close", id: 0 });
    this.closed = true;
    this.channel.terminate();
    this.updateStatus({ phase: "closed" });
  }

  // ---- internals ------------------------------------------------------------

  /** @internal */
  assertOpen(): void {
    if (this.closed) throw new IbexError("ERR_CLOSED", `Database \`${this.name}\` is closed`);
  }

  /** @internal throws, changing nothing, if the rules forbid writing `repo`. */
  assertWritable(repo: string): void {
    if (this.readOnly.has(repo)) {
      const who = this.state.user ? `user ${this.state.user.email || this.state.user.id}` : "an anonymous session";
      throw new IbexError("ERR_FORBIDDEN", `${who} may not write ${repo} (the server's rules)`);
    }
  }

  // ---- users ----------------------------------------------------------------

  /** The logged-in user (`{id, email}`), or null. Changes notify `onStatus`. */
  get user(): User | null {
    return this.state.user;
  }

  /** Asks the server to send a one-time login link to `email`. Resolves
   * with the normalized address once the server has sent it. Opening the
   * link's page calls `completeLogin` with its `ibex-login` token. */
  async login(email: string): Promise<string> {
    this.assertOpen();
    return (await this.request({ t: "login", id: 0, email })) as string;
  }

  /** Redeems a login link's token: this device's session now belongs to
   * that user (a session already bound to another user is replaced by a
   * new one first). Resolves with the user. */
  async completeLogin(token: string): Promise<User> {
    this.assertOpen();
    await this.flushOutbox();
    return (await this.request({ t: "redeem", id: 0, token })) as User;
  }

  /** The address a login link's token is for, without using it up: ask
   * "Log in as …?" before `completeLogin`, so a link someone else sent
   * cannot silently sign this device into their account. */
  async loginInfo(token: string): Promise<string> {
    this.assertOpen();
    return (await this.request({ t: "loginInfo", id: 0, token })) as string;
  }

  /** Ends the session: the server expires its certificate and this device
   * continues with a new anonymous session. Local data stays. */
  async logout(): Promise<void> {
    this.assertOpen();
    await this.flushOutbox();
    await this.request({ t: "logout", id: 0 });
  }

  private assertKnown(schema: Schema): void {
    if (this.schemas.get(schema.id) !== schema && !this.schemas.has(schema.id)) {
      throw new IbexError("ERR_UNKNOWN_SCHEMA", `Unknown schema \`${schema.id}\`: pass it in \`schemas\` to IbexDB.open`);
    }
  }

  /** @internal queues an item's changes for the next batch. */
  enqueue(item: Item, changes: import("./codec.js").Change[]): void {
    (item.queued ??= []).push(...changes);
    this.outbox.set(item, true);
    if (!this.outboxScheduled) {
      this.outboxScheduled = true;
      queueMicrotask(() => void this.flushOutbox());
    }
  }

  /** Posts queued writes; resolves once they and all earlier batches are
   * posted, so any request sent afterwards reaches the engine after them. */
  private flushOutbox(): Promise<void> {
    this.outboxScheduled = false;
    if (this.outbox.size === 0) return this.posted;
    const items = [...this.outbox.keys()];
    this.outbox.clear();
    const repos = [...new Set(items.map((i) => i.repo))];
    const send = () => {
      const seq = ++this.seq;
      const ms: Mutation[] = items.map((i) => {
        const changes = i.queued ?? [];
        i.queued = null;
        i.sent(seq, changes);
        return { repo: i.repo, key: i.key, ns: i.schema.ns, version: i.schema.version, changes };
      });
      this.inFlight.set(seq, items);
      this.inFlightItems += items.length;
      const batch = writeMutations(ms);
      this.unsure.set(seq, batch.slice());
      this.channel.post({ t: "mutate", seq, batch });
      this.updateStatus({});
    };
    if (this.deferred === 0 && repos.every((r) => this.isLoaded(r))) {
      // The common case: post now, in order, with no added latency.
      send();
      return this.posted;
    }
    // The engine applies writes on top of what is stored, so a batch for a
    // repository that is still loading waits for it — and every later batch
    // and request waits behind it.
    this.deferred++;
    this.posted = Promise.all([this.posted, ...repos.map((r) => this.open(r))]).then(
      () => {
        this.deferred--;
        send();
      },
      (e) => {
        this.deferred--;
        this.emitError(fromEngine(e));
      },
    );
    return this.posted;
  }

  /** @internal an item's value changed: re-evaluate it in every live query. */
  itemChanged(item: Item): void {
    for (const q of this.queries) if (q.repo === item.repo && typeof q.options.source === "string") q.update(item);
    this.notifyWatchers(item);
  }

  /** @internal */
  scheduleNotify(q: Query<any>): void {
    this.notifyQueue.add(q);
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      const qs = [...this.notifyQueue];
      this.notifyQueue.clear();
      for (const x of qs) x.notify();
    });
  }

  /** @internal */
  forgetQuery(q: Query<any>): void {
    this.queries.delete(q);
  }

  private request(msg: Extract<import("./protocol.js").ToEngine, { id: number }>): Promise<unknown> {
    const id = this.nextRequest++;
    return new Promise((resolve, reject) => {
      const m = { ...msg, id };
      this.requests.set(id, { resolve, reject, msg: m });
      this.channel.post(m);
    });
  }

  private schemaFor(ns: string, version: number): Schema {
    return this.schemas.get(`${ns}@${version}`) ?? this.latest.get(ns) ?? { ns, version, fields: {}, upgrade: [], id: `${ns}@${version}` };
  }

  /** Applies a head to the mirror; live queries see it at once, unless
   * `deferQueries` (the caller hands them a whole slice: `itemsLoaded`). */
  private applyHead(h: HeadRecord, notify: boolean, deferQueries = false): Item {
    const items = this.repoItems(h.repo);
    let item = items.get(h.key);
    const schema = this.schemaFor(h.ns, h.version);
    if (!item) {
      item = new Item(this, h.repo, h.key, schema);
      this.addItem(item);
    }
    item.applyHead(schema, h.deleted, h.fields, notify);
    if (!deferQueries) this.itemChanged(item);
    return item;
  }

  /** A slice of a loading repository reached the mirror: each live query
   * merges the new matches in at once (one sort of the slice and one merge)
   * instead of one sorted insertion per item, which is quadratic when heads
   * arrive in another order than the query's. */
  private itemsLoaded(repo: string, items: Item[]): void {
    for (const q of this.queries) if (q.repo === repo && typeof q.options.source === "string") q.insertMany(items);
    if (this.pathWatchers.size) for (const item of items) this.notifyWatchers(item);
  }

  private notifyWatchers(item: Item): void {
    const watchers = this.pathWatchers.get(item.path);
    if (watchers) for (const w of [...watchers]) w();
  }

  /** A different engine serves this tab now (leader hand-over): re-send
   * what it needs — init, the repositories this tab loaded, unfinished
   * requests and every batch not yet durable, in order. */
  private engineChanged(): void {
    // Also while this tab's own init is unanswered: the engine it went to
    // may be gone (its tab reloaded), and a second init is harmless.
    if (!this.schemaBytes) return;
    this.channel.post({ t: "init", schemas: this.schemaBytes.slice() });
    for (const [repo, st] of this.repoStatus) if (st.phase === "ready") void this.request({ t: "open", id: 0, repo });
    for (const [, r] of [...this.requests].sort((a, b) => a[0] - b[0])) this.channel.post(r.msg);
    for (const [seq, batch] of [...this.unsure].sort((a, b) => a[0] - b[0])) this.channel.post({ t: "mutate", seq, batch: batch.slice() });
  }

  /** Applies a load's heads in slices, yielding between them. */
  private async applyLoaded(repo: string, report: LoadReport, heads: Uint8Array): Promise<void> {
    const total = headCount(heads);
    // A repository re-opened after a hand-over: changed items notify.
    const reload = this.isLoaded(repo);
    if (reload) {
      for (const h of readHeads(heads)) this.applyHead(h, true);
      return;
    }
    const st: RepoStatus = { phase: "loading", loaded: 0, total, report };
    this.repoStatus.set(repo, st);
    this.updateStatus({});
    let n = 0;
    let slice: Item[] = [];
    for (const h of readHeads(heads)) {
      slice.push(this.applyHead(h, false, true));
      if (++n % SLICE === 0) {
        this.itemsLoaded(repo, slice);
        slice = [];
        this.repoStatus.set(repo, { ...st, loaded: n });
        this.updateStatus({});
        await new Promise((r) => setTimeout(r, 0));
      }
    }
    this.itemsLoaded(repo, slice);
    // Live queries have seen every item (itemsLoaded).
    this.repoStatus.set(repo, { phase: "ready", loaded: total, total, report });
    this.updateStatus({});
    if (report.corrupt.length || report.rejected.length) {
      this.emitError(new IbexError("ERR_LOG_HEADER", `Repository ${repo}: ${report.corrupt.length} damaged record(s) skipped, ${report.rejected.length} rejected; the rest opened`));
    }
  }

  private receive(m: FromEngine): void {
    switch (m.t) {
      case "ready":
        this.updateStatus({ phase: "ready", sessionId: m.sessionId, engine: m.engine, storage: m.storage, user: m.user });
        this.readyWaiter?.resolve();
        this.readyWaiter = null;
        break;
      case "opened": {
        if (m.writable) this.readOnly.delete(m.repo);
        else this.readOnly.add(m.repo);
        const req = this.requests.get(m.id);
        this.requests.delete(m.id);
        this.applyLoaded(m.repo, m.report, m.heads).then(
          () => req?.resolve(undefined),
          (e) => req?.reject(fromEngine(e)),
        );
        break;
      }
      case "outcomes": {
        const items = this.inFlight.get(m.seq) ?? [];
        this.inFlight.delete(m.seq);
        this.inFlightItems -= items.length;
        readOutcomes(m.bytes).forEach((o, i) => {
          const item = items[i];
          item?.acknowledged(m.seq);
          if (o.status === "failed") this.emitError(new IbexError(o.code as IbexError["code"], `Write to ${item?.path} was rejected by the engine: ${o.message}`));
        });
        this.updateStatus({});
        break;
      }
      case "changed":
        for (const h of readHeads(m.bytes)) this.applyHead(h, true);
        break;
      case "user":
        for (const [repo, w] of Object.entries(m.writable)) {
          if (w) this.readOnly.delete(repo);
          else this.readOnly.add(repo);
        }
        this.updateStatus({ user: m.user, sessionId: m.sessionId });
        break;
      case "syncStatus":
        this.updateStatus({ online: m.online, synced: m.synced, lastSync: m.lastSync, unsynced: m.unacked });
        break;
      case "durable":
        for (const seq of [...this.unsure.keys()]) if (seq <= m.seq) this.unsure.delete(seq);
        break;
      case "leader":
        this.updateStatus({ leader: m.leader });
        this.engineChanged();
        break;
      case "done": {
        const req = this.requests.get(m.id);
        this.requests.delete(m.id);
        req?.resolve(m.value);
        break;
      }
      case "error": {
        const e = new IbexError(m.code as IbexError["code"], m.message);
        if (m.id !== undefined && this.requests.has(m.id)) {
          this.requests.get(m.id)!.reject(e);
          this.requests.delete(m.id);
        } else if (this.readyWaiter) {
          this.readyWaiter.reject(e);
          this.readyWaiter = null;
          this.updateStatus({ phase: "error", error: e });
        } else {
          this.emitError(e);
        }
        break;
      }
    }
  }
}
