// `IbexDB`: the synchronous, in-memory face of a database whose truth lives
// in the engine. Reads never wait; writes apply at once, reach the engine
// in one batch per microtask, and `flush()` resolves only after the
// engine's storage flush. The parts live next door: the mirror of items
// (mirror.ts), live queries (live.ts, shared_queries.ts), writes on their
// way (outbox.ts), requests (requests.ts) and the status (status.ts); this
// file wires them to the engine's messages (wire/protocol.ts).

import { type Head, HeadReader, readOutcomes, writeSchemas } from "../wire/codec.js";
import { IbexError, toIbexError } from "../wire/errors.js";
import type { HistoryRequest } from "../wire/history.js";
import type { EngineChannel, FromEngine, LoadReport, User } from "../wire/protocol.js";
import { type At, type ChangeFilter, type Conflict, History, type HistoryEntry, type HistoryOptions, type HistoryPage, type Playback, type RevertOptions } from "./history.js";
import type { ItemHost } from "./internal.js";
import type { Item } from "./item.js";
import { Live } from "./live.js";
import { Mirror } from "./mirror.js";
import { Outbox } from "./outbox.js";
import { Query, type QueryOptions } from "./query.js";
import { Requests } from "./requests.js";
import {
  type Fields,
  type InitData,
  type Schema,
  checkNew,
  checkRepoPath,
  checkSegment,
  splitItemPath,
  toWireSchema,
} from "./schema.js";
import { type SharedQuery, SharedQueries, queryKey } from "./shared_queries.js";
import { type EngineStats, type RepoStatus, type Status, StatusBoard } from "./status.js";

export interface OpenOptions {
  /** Database name: one engine and one storage area per name. */
  name: string;
  schemas: readonly Schema[];
  /** Repositories to load before `open` resolves. */
  repos?: readonly string[];
}

/** Heads are applied to the mirror in slices so no task runs long: a
 * slice is sized to take about this long, live queries taking its items
 * included (the browser can render and handle input between slices; the
 * Long Tasks API flags tasks over 50 ms, and a garbage collection landing
 * in a slice needs the headroom). */
const SLICE_MS = 8;
/** The first slice: small, so a query's first rows show early, and a
 * measure of what the next slices can hold. */
const FIRST_SLICE = 1_000;
/** Heads applied between two looks at the clock. */
const CLOCK_EVERY = 64;
/** The smallest slice after the first. */
const MIN_SLICE = 500;

const now: () => number = typeof performance !== "undefined" ? () => performance.now() : () => Date.now();

/** Lets other tasks run: `scheduler.yield()` where there is one (its
 * continuation goes first, ahead of other queued tasks), else a message to
 * ourselves (a zero timeout nested in timeouts waits ≥ 4 ms), else
 * `setImmediate` (Node), else a timeout. */
function yieldTask(): Promise<void> {
  const g = globalThis as { scheduler?: { yield?: () => Promise<void> }; setImmediate?: (f: () => void) => unknown };
  if (typeof g.scheduler?.yield === "function") return g.scheduler.yield();
  const immediate = g.setImmediate;
  if (typeof immediate === "function") return new Promise((r) => immediate(() => r()));
  if (typeof MessageChannel === "function") {
    return new Promise((r) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        r();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((r) => setTimeout(r, 0));
}

function randomKey(): string {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  let s = "";
  for (const x of b) s += "0123456789abcdefghijklmnopqrstuvwxyz"[x % 36];
  return s;
}

export class Database {
  readonly name: string;
  private readonly board = new StatusBoard();
  private readonly requests: Requests;
  private readonly live: Live;
  private readonly mirror: Mirror;
  private readonly outbox: Outbox;
  private readonly shared = new SharedQueries();
  private readonly past: History;
  private repoStatus = new Map<string, RepoStatus>();
  private opening = new Map<string, Promise<void>>();
  /** Loads waiting for the rest of their heads, by request id. */
  private moreHeads = new Map<number, { rest: (heads: Uint8Array | null) => void; done: Promise<void> }>();
  private schemaBytes: Uint8Array | null = null;
  private closed = false;
  private readyWaiter: { resolve: () => void; reject: (e: IbexError) => void } | null = null;
  /** Repositories whose heads are being applied (in slices), in the order
   * their loads arrived; heads of later changes wait until they are done,
   * so an older loaded value never overwrites a newer one. */
  private applying = new Map<string, { chain: Promise<void>; count: number; later: Head[] }>();
  /** Repositories this session may not write (the server's rules). */
  private readOnly = new Set<string>();
  /** The last batch covered by a `flush()` call (failures after it are the next one's). */
  private flushedUpTo = 0;

  /** Use `IbexDB.open`. */
  protected constructor(
    private readonly channel: EngineChannel,
    opts: OpenOptions,
  ) {
    this.name = opts.name;
    this.requests = new Requests((m) => channel.post(m));
    this.live = new Live((repo) => this.isLoaded(repo));
    const host: ItemHost = {
      checkWritable: (repo) => {
        this.assertOpen();
        this.assertWritable(repo);
      },
      enqueue: (item, changes) => this.outbox.enqueue(item, changes),
      itemChanged: (item) => this.live.itemChanged(item),
      itemTouched: (item) => this.live.itemTouched(item),
      itemGone: (item) => this.mirror.remove(item),
      history: (path, opts) => this.history(path, opts),
      itemAt: (path, at) => {
        const { repo, key } = splitItemPath(path);
        return this.past.itemAt(repo, key, at);
      },
      revertItem: (path, commit) => {
        const { repo, key } = splitItemPath(path);
        return this.past.restore(repo, key, commit);
      },
      conflicts: (path) => {
        const { repo, key } = splitItemPath(path);
        return this.past.conflicts(repo, key);
      },
    };
    this.past = new History({
      schemas: opts.schemas,
      ask: async (repo: string, req: HistoryRequest) => {
        await this.open(repo);
        await this.outbox.flush();
        return this.requests.send({ t: "history", req });
      },
    });
    this.mirror = new Mirror(opts.schemas, host);
    this.outbox = new Outbox({
      post: (m) => channel.post(m),
      isLoaded: (repo) => this.isLoaded(repo),
      open: (repo) => this.open(repo),
      changed: () => this.updateStatus({}),
      error: (e) => this.board.emitError(e),
    });
    channel.onMessage((m) => this.receive(m));
  }

  /** Starts the engine; resolves once it is ready. */
  protected start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.readyWaiter = { resolve, reject };
      this.schemaBytes = writeSchemas(this.mirror.schemaList.map(toWireSchema));
      this.channel.post({ t: "init", schemas: this.schemaBytes.slice() });
    });
  }

  // ---- status -------------------------------------------------------------

  get status(): Status {
    return this.board.current;
  }

  /** Called on every status change (phase, progress, errors, pending writes). */
  onStatus(listener: (s: Status) => void): () => void {
    return this.board.onStatus(listener);
  }

  /** Errors that happen after the call that caused them returned: a write
   * the engine refused (`error.path` names the item; the item shows the
   * engine's value again), a repository that failed to load, a sync error.
   * Without listeners they go to the console. */
  onError(listener: (e: IbexError) => void): () => void {
    return this.board.onError(listener);
  }

  private updateStatus(patch: Partial<Status>): void {
    let loaded = 0;
    let total = 0;
    let loading = false;
    for (const r of this.repoStatus.values()) {
      loaded += r.loaded;
      total += r.total;
      loading ||= r.phase === "loading";
    }
    const cur = this.board.current.phase;
    const phase = cur === "starting" || cur === "error" || cur === "closed" ? cur : loading ? "loading" : "ready";
    this.board.publish({ phase, loaded, total, repos: Object.fromEntries(this.repoStatus), pendingWrites: this.outbox.pending, ...patch });
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
      p = this.requests.send({ t: "open", repo }).then(() => undefined);
      p.catch((e: IbexError) => {
        this.repoStatus.set(repo, { phase: "error", loaded: 0, total: 0, error: e });
        this.updateStatus({});
        this.board.emitError(e);
      });
      this.opening.set(repo, p);
    }
    return p;
  }

  isLoaded(repo: string): boolean {
    return this.repoStatus.get(repo)?.phase === "ready";
  }

  /** Applies a load's heads (after any earlier load of `repo`), then the
   * changes that arrived meanwhile. */
  private loaded(repo: string, report: LoadReport, heads: Uint8Array, total: number, more?: Promise<Uint8Array | null>): Promise<void> {
    let a = this.applying.get(repo);
    if (!a) {
      a = { chain: Promise.resolve(), count: 0, later: [] };
      this.applying.set(repo, a);
    }
    const entry = a;
    entry.count++;
    const run = entry.chain
      .then(() => this.applyLoaded(repo, report, heads, total, more))
      .finally(() => {
        if (--entry.count > 0) return;
        this.applying.delete(repo);
        for (const h of entry.later) this.applyHead(h);
      });
    entry.chain = run.catch(() => {});
    return run;
  }

  /** Applies a load's heads in time-bounded slices, yielding between them.
   * Live queries take each slice as it lands, so a query has rows before
   * the whole repository is in memory: the matches loaded so far, in the
   * query's order. Heads arrive in key order (the first ones with
   * `opened`, the others in `moreHeads`), which is a query's order without
   * `sortBy`; with another order, until `loading` turns false — after the
   * last slice — an item of a later slice may still sort before them. */
  private async applyLoaded(repo: string, report: LoadReport, heads: Uint8Array, total: number, more?: Promise<Uint8Array | null>): Promise<void> {
    let reader = new HeadReader(heads);
    // A repository re-opened after a hand-over: changed items notify.
    const reopened = this.isLoaded(repo);
    const st: RepoStatus = { phase: "loading", loaded: 0, total, report };
    if (!reopened) {
      this.repoStatus.set(repo, st);
      this.updateStatus({});
    }
    let n = 0;
    let slice: Item[] = [];
    let size = FIRST_SLICE;
    let t0 = now();
    for (;;) {
      if (!reader.next()) {
        if (!more) break;
        // The other heads (`moreHeads`) are still to come: queries take
        // what arrived first (their first rows) meanwhile.
        if (!reopened && slice.length) {
          this.live.itemsLoaded(repo, slice);
          slice = [];
          this.repoStatus.set(repo, { ...st, loaded: n });
          this.updateStatus({});
        }
        const rest = await more;
        more = undefined;
        if (rest === null) return; // the engine changed: `open` is re-sent
        if (!rest) break;
        reader = new HeadReader(rest);
        continue;
      }
      const item = this.mirror.applyHead(reader, reopened);
      n++;
      if (!reopened) slice.push(item);
      const full = slice.length >= size || (n % CLOCK_EVERY === 0 && now() - t0 > SLICE_MS);
      if (full && n < total) {
        if (!reopened) {
          const k = slice.length;
          this.live.itemsLoaded(repo, slice);
          slice = [];
          this.repoStatus.set(repo, { ...st, loaded: n });
          this.updateStatus({});
          // The next slice: as many heads as fit the budget at this one's
          // pace, queries included (their cost per slice grows only with
          // log n: see sorted.ts).
          size = Math.max(MIN_SLICE, Math.floor((k * SLICE_MS) / Math.max(now() - t0, 0.1)));
        }
        await yieldTask();
        t0 = now();
      }
    }
    if (reopened) return;
    this.live.itemsLoaded(repo, slice);
    this.repoStatus.set(repo, { phase: "ready", loaded: total, total, report });
    this.updateStatus({});
    if (report.corrupt.length || report.rejected.length) {
      this.board.emitError(new IbexError("ERR_LOG_DAMAGED", `Repository ${repo}: ${report.corrupt.length} damaged record(s) skipped, ${report.rejected.length} rejected; the rest opened (see status.repos["${repo}"].report)`));
    }
  }

  /** A head from the engine: the mirror and live queries see it at once
   * (the item tells them if it changed), unless its repository's load is
   * still being applied: then after it. */
  private applyHead(h: Head): void {
    const a = this.applying.get(h.repo);
    if (a) a.later.push(h instanceof HeadReader ? h.head() : h);
    else this.mirror.applyHead(h, true);
  }

  // ---- items --------------------------------------------------------------

  /** Creates an item synchronously (key generated unless given). Throws,
   * changing nothing, if the values do not fit the schema. */
  create<F extends Fields>(repo: string, schema: Schema<F>, values: InitData<F>, opts: { key?: string } = {}): Item<F> {
    checkRepoPath(repo);
    this.assertOpen();
    this.assertWritable(repo);
    if (!this.mirror.knows(schema)) throw new IbexError("ERR_UNKNOWN_SCHEMA", `Unknown schema \`${schema.id}\`: pass it in \`schemas\` to IbexDB.open`);
    const key = opts.key ?? randomKey();
    checkSegment(`${repo}/${key}`, key, "item key");
    const existing = this.mirror.get(repo, key) as Item<F> | undefined;
    if (existing && !existing.isDeleted) throw new IbexError("ERR_PATH", `Item \`${repo}/${key}\` already exists`);
    checkNew(schema, values as Record<string, unknown>);
    if (!this.opening.has(repo)) void this.open(repo);
    if (existing) {
      // Re-creating a soft-deleted item: restored, with the new values.
      existing.restore();
      existing.initialize(values as Record<string, unknown>);
      return existing;
    }
    const item = this.mirror.newItem(repo, key, schema);
    this.mirror.add(item);
    item.initialize(values as Record<string, unknown>);
    return item;
  }

  /** The item at `path`, or undefined if it does not exist (or its
   * repository has not loaded yet: see `open`). Synchronous. */
  item<F extends Fields>(path: string, schema: Schema<F>): Item<F> | undefined;
  item<F extends Fields = Fields>(path: string): Item<F> | undefined;
  /** With `schema`, the item is typed by it, and an item of another
   * schema (namespace) is refused with ERR_VALIDATION rather than mistyped. */
  item<F extends Fields = Fields>(path: string, schema?: Schema<F>): Item<F> | undefined {
    let found = this.mirror.at(path) as unknown as Item<F> | undefined;
    if (!found) {
      const { repo, key } = splitItemPath(path);
      if (!this.opening.has(repo) && !this.closed) void this.open(repo);
      found = this.mirror.get(repo, key) as Item<F> | undefined;
    }
    if (found && schema && found.schema.ns !== schema.ns) {
      throw new IbexError("ERR_VALIDATION", `${path} holds a "${found.schema.ns}" item, not "${schema.ns}"`, { path });
    }
    return found;
  }

  /** Number of items in a loaded repository (including soft-deleted ones), O(1). */
  count(repo: string): number {
    return this.mirror.count(repo);
  }

  /** Every item key of a loaded repository (including soft-deleted ones). */
  keys(repo: string): string[] {
    return this.mirror.keys(repo);
  }

  /** A live query (see `QueryOptions`). Starts loading its repository. */
  query<F extends Fields>(opts: QueryOptions<F>): Query<F> {
    this.assertOpen();
    if (opts.at !== undefined) {
      // The repository as it was: a read-only snapshot beside the live one.
      if (typeof opts.source !== "string") throw new IbexError("ERR_CONFIG", "a query `at` a time reads a repository path, not another query");
      checkRepoPath(opts.source);
      return this.past.queryAt(opts, opts.at);
    }
    const q = new Query<F>(this.live, opts);
    const repo = q.repo;
    checkRepoPath(repo);
    this.live.add(q);
    if (!this.opening.has(repo)) void this.open(repo);
    if (typeof opts.source === "string") q.insertMany(this.mirror.values(repo) as Iterable<Item<F>>);
    else q.insertMany(opts.source.results as Item<F>[]);
    return q;
  }

  /** Calls `listener` whenever the item at `path` gets a new commit, here
   * or from elsewhere — also one that leaves its value as it was (a
   * concurrent write that lost): what its history and conflicts follow. */
  watchCommits(path: string, listener: () => void): () => void {
    return this.live.watchCommits(path, listener);
  }

  /** Calls `listener` whenever the item at `path` changes — including when
   * it first appears (loaded, created here, or arriving from elsewhere). */
  watchItem(path: string, listener: () => void): () => void {
    return this.live.watch(path, listener);
  }

  /** The live query for these options, shared with every caller asking
   * with equal options (UI bindings: the React hooks use it). Functions in
   * the options (`where`, a `sortBy` comparator) are compared by source
   * text, so they need `deps`, the values they read (`[]` if none): without
   * it this throws ERR_CONFIG. Pair each `retain()` with its release; a
   * query nobody retains closes after `gcMs`. */
  sharedQuery<F extends Fields>(opts: QueryOptions<F>, deps?: readonly unknown[], gcMs = 1_000): SharedQuery<Query<F>> {
    return this.shared.get(queryKey(opts as QueryOptions<any>, deps), () => this.query(opts), gcMs);
  }

  /** Number of live queries (for tests and diagnostics). */
  get liveQueries(): number {
    return this.live.size;
  }

  /** Who changed what, when, with each field before → after (from the
   * signed commit graph, read from the log on demand), oldest first; with
   * `limit` (and `before`), one page of the newest entries. */
  async history(path: string, opts?: HistoryOptions): Promise<HistoryEntry[]> {
    return (await this.historyPage(path, opts)).entries;
  }

  /** A page of an item's history (see `history`) and how many entries the
   * whole history has. */
  historyPage(path: string, opts?: HistoryOptions): Promise<HistoryPage> {
    const { repo, key } = splitItemPath(path);
    return this.past.page(repo, key, opts);
  }

  /** Changes across a repository's items, oldest first, each with its
   * verified signer — by session, user and time range: an audit log. */
  audit(filter: ChangeFilter): Promise<HistoryEntry[]> {
    checkRepoPath(filter.repo);
    return this.past.audit(filter);
  }

  /** Removes a session's (or user's, or exactly these commits') changes
   * from every item they touched, keeping everyone else's later edits
   * (three-way, like `git revert`), as new commits that sync like any
   * edit. Resolves with the new commits' ids: revert those
   * (`{ repo, commits }`) to undo the revert. */
  revert(opts: RevertOptions): Promise<string[]> {
    checkRepoPath(opts.repo);
    return this.past.revert(opts);
  }

  /** Replays a repository's commits between two times into a read-only
   * view: `playback.query(...)` is a live query over it; `step()`,
   * `seek()`, `play({ speed })` move it. */
  playback(opts: { repo: string; from?: number | Date; to?: number | Date }): Promise<Playback> {
    checkRepoPath(opts.repo);
    return this.past.playback(opts.repo, opts.from ?? Number.MIN_SAFE_INTEGER, opts.to ?? Number.MAX_SAFE_INTEGER);
  }

  /** The item at `path` as it was at a time or commit (read-only). */
  async itemAt<F extends Fields = Fields>(path: string, at: At): Promise<Item<F> | undefined> {
    const { repo, key } = splitItemPath(path);
    return this.past.itemAt<F>(repo, key, at);
  }

  /** Fields of the item at `path` whose concurrent values a merge decided. */
  conflicts(path: string): Promise<Conflict[]> {
    const { repo, key } = splitItemPath(path);
    return this.past.conflicts(repo, key);
  }

  /** What the engine holds in memory: its WebAssembly linear memory, where
   * the commit graphs and values of every open repository live (the
   * synchronous mirror on this thread is on top of that). */
  async stats(): Promise<EngineStats> {
    this.assertOpen();
    return (await this.requests.send({ t: "stats" })) as EngineStats;
  }

  /** The repository as a log image (Ibex's on-disk format): a backup, or a
   * way to carry data to another replica with `import`. */
  async export(repo: string): Promise<Uint8Array> {
    await this.open(repo);
    await this.outbox.flush();
    return (await this.requests.send({ t: "export", repo })) as Uint8Array;
  }

  /** Merges a log image made by `export` (here or on another replica).
   * Every commit is decoded strictly and its signature verified; bad ones
   * are skipped and counted. Items change as if the commits had synced. */
  async import(repo: string, image: Uint8Array): Promise<{ added: number; rejected: number }> {
    await this.open(repo);
    await this.outbox.flush();
    return (await this.requests.send({ t: "import", repo, image })) as { added: number; rejected: number };
  }

  /** Resolves once every write made so far is durable on this device.
   * Rejects if a write made since the previous `flush()` call failed (the
   * error names its item; the item shows the engine's value again). */
  async flush(): Promise<void> {
    this.assertOpen();
    await this.outbox.flush();
    const from = this.flushedUpTo;
    const upTo = this.outbox.lastSeq;
    this.flushedUpTo = Math.max(this.flushedUpTo, upTo);
    await this.requests.send({ t: "flush" });
    const failed = this.outbox.failuresBetween(from, upTo);
    if (failed.length) {
      const first = failed[0]!;
      throw new IbexError(first.code, failed.length === 1 ? first.message : `${failed.length} writes failed; the first: ${first.message}`, { ...(first.path ? { path: first.path } : {}), cause: failed });
    }
  }

  /** Resolves once a fresh round with the server completed for every open
   * repository — its commits are here — and every write made so far is
   * acknowledged by the server as durable. Rejects with ERR_SYNC_TIMEOUT
   * (saying why) if that takes longer than `timeoutMs`: offline, a frozen
   * or partitioned server, or writes the server refused. */
  async sync(timeoutMs = 30_000): Promise<void> {
    this.assertOpen();
    await this.outbox.flush();
    await this.requests.send({ t: "sync", timeoutMs });
  }

  /** Flushes, then stops the engine. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.outbox.flush();
    await this.requests.send({ t: "close" });
    this.closed = true;
    this.channel.terminate();
    this.updateStatus({ phase: "closed" });
  }

  private assertOpen(): void {
    if (this.closed) throw new IbexError("ERR_CLOSED", `Database \`${this.name}\` is closed`);
  }

  /** Throws, changing nothing, if the rules forbid writing `repo`. */
  private assertWritable(repo: string): void {
    if (this.readOnly.has(repo)) {
      const user = this.board.current.user;
      const who = user ? `user ${user.email || user.id}` : "an anonymous session";
      throw new IbexError("ERR_FORBIDDEN", `${who} may not write ${repo} (the server's rules)`);
    }
  }

  // ---- users ----------------------------------------------------------------

  /** The logged-in user (`{id, email}`), or null. Changes notify `onStatus`. */
  get user(): User | null {
    return this.board.current.user;
  }

  /** Asks the server to send a one-time login link to `email`. Resolves
   * with the normalized address once the server has sent it. Opening the
   * link's page calls `completeLogin` with its `ibex-login` token. */
  async login(email: string): Promise<string> {
    this.assertOpen();
    return (await this.requests.send({ t: "login", email })) as string;
  }

  /** Redeems a login link's token: this device's session now belongs to
   * that user (a session already bound to another user is replaced by a
   * new one first). Resolves with the user. */
  async completeLogin(token: string): Promise<User> {
    this.assertOpen();
    await this.outbox.flush();
    return (await this.requests.send({ t: "redeem", token })) as User;
  }

  /** The address a login link's token is for, without using it up: ask
   * "Log in as …?" before `completeLogin`, so a link someone else sent
   * cannot silently sign this device into their account. */
  async loginInfo(token: string): Promise<string> {
    this.assertOpen();
    return (await this.requests.send({ t: "loginInfo", token })) as string;
  }

  /** Ends the session: the server expires its certificate and this device
   * continues with a new anonymous session. Local data stays. */
  async logout(): Promise<void> {
    this.assertOpen();
    await this.outbox.flush();
    await this.requests.send({ t: "logout" });
  }

  // ---- the engine's messages -------------------------------------------------

  /** A different engine serves this tab now (leader hand-over): re-send
   * what it needs — init, the repositories this tab loaded, every batch
   * not yet durable, then unfinished requests, in order. */
  private engineChanged(): void {
    // Also while this tab's own init is unanswered: the engine it went to
    // may be gone (its tab reloaded), and a second init is harmless.
    if (!this.schemaBytes) return;
    this.channel.post({ t: "init", schemas: this.schemaBytes.slice() });
    // Loads whose other heads will not come from the engine that is gone
    // stop where they are (their repository stays loading); their `open`
    // is re-sent below with the other unanswered requests.
    for (const [, p] of this.moreHeads) p.rest(null);
    this.moreHeads.clear();
    for (const [repo, st] of this.repoStatus) if (st.phase === "ready") void this.requests.send({ t: "open", repo });
    // Writes before requests: a `flush()` or `sync()` waiting for an answer
    // was asked after those writes and must cover them on the new engine.
    this.outbox.replay();
    this.requests.replay();
  }

  private setWritable(repo: string, writable: boolean): void {
    if (writable) this.readOnly.delete(repo);
    else this.readOnly.add(repo);
  }

  private receive(m: FromEngine): void {
    switch (m.t) {
      case "ready":
        this.updateStatus({ phase: "ready", sessionId: m.sessionId, engine: m.engine, storage: m.storage, user: m.user });
        this.readyWaiter?.resolve();
        this.readyWaiter = null;
        break;
      case "opened": {
        this.setWritable(m.repo, m.writable);
        if (new HeadReader(m.heads).total < m.total) {
          // The other heads follow (`moreHeads`); the request is answered
          // once they are applied, and stays to be re-sent if the engine
          // changes meanwhile.
          let rest!: (heads: Uint8Array | null) => void;
          const more = new Promise<Uint8Array | null>((r) => (rest = r));
          const done = this.loaded(m.repo, m.report, m.heads, m.total, more);
          this.moreHeads.set(m.id, { rest, done });
          break;
        }
        const req = this.requests.take(m.id);
        this.loaded(m.repo, m.report, m.heads, m.total).then(
          () => req?.resolve(undefined),
          (e) => req?.reject(toIbexError(e)),
        );
        break;
      }
      case "moreHeads": {
        const pending = this.moreHeads.get(m.id);
        if (!pending) break;
        this.moreHeads.delete(m.id);
        const req = this.requests.take(m.id);
        pending.rest(m.heads);
        pending.done.then(
          () => req?.resolve(undefined),
          (e) => req?.reject(toIbexError(e)),
        );
        break;
      }
      case "outcomes":
        this.outbox.outcomes(m.seq, readOutcomes(m.bytes));
        break;
      case "batchFailed":
        this.outbox.batchFailed(m.seq, toIbexError(m));
        break;
      case "changed": {
        const r = new HeadReader(m.bytes);
        while (r.next()) this.applyHead(r);
        break;
      }
      case "user":
        for (const [repo, w] of Object.entries(m.writable)) this.setWritable(repo, w);
        this.updateStatus({ user: m.user, sessionId: m.sessionId });
        break;
      case "syncStatus":
        this.updateStatus({ online: m.online, synced: m.synced, lastSync: m.lastSync, unsynced: m.unacked });
        break;
      case "durable":
        this.outbox.durable(m.seq);
        break;
      case "leader":
        this.updateStatus({ leader: m.leader });
        this.engineChanged();
        break;
      case "done":
        this.requests.take(m.id)?.resolve(m.value);
        break;
      case "error": {
        const e = toIbexError(m);
        if (m.id !== undefined) {
          // An open whose other heads could not be listed: its load stops.
          this.moreHeads.get(m.id)?.rest(null);
          this.moreHeads.delete(m.id);
        }
        if (m.id !== undefined && this.requests.reject(m.id, e)) break;
        if (this.readyWaiter) {
          this.readyWaiter.reject(e);
          this.readyWaiter = null;
          this.updateStatus({ phase: "error", error: e });
        } else {
          this.board.emitError(e);
        }
        break;
      }
    }
  }
}
