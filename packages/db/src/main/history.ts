// History as a feature, on the main thread: entries with values, the past
// as read-only views (an item at a time, a query over the repository at a
// time, a playback), conflicts, audit and reverts. The engine computes
// (rust/core/src/repository/history.rs has the rules); this file turns its
// answers into field values and read-only items.

import { type Head, HeadReader, type Value } from "../wire/codec.js";
import { IbexError } from "../wire/errors.js";
import {
  type HistoryFilter,
  type HistoryRequest,
  type WireEntry,
  type WireWritten,
  readConflicts,
  readEntries,
  readPage,
  readSteps,
} from "../wire/history.js";
import type { ItemHost } from "./internal.js";
import type { Item } from "./item.js";
import { Live } from "./live.js";
import { Mirror } from "./mirror.js";
import { Query, type QueryOptions } from "./query.js";
import { type Fields, type Schema, fromWire } from "./schema.js";

/** One field a commit changed; `"$deleted"` stands for the soft-delete flag. */
export interface FieldChange {
  field: string;
  /** The value before (undefined: absent). */
  before: unknown;
  after: unknown;
}

/** One commit of an item, with what it changed. */
export interface HistoryEntry {
  /** The commit id (hex): pass it to `item.at`, `item.revert` or `db.revert`. */
  id: string;
  /** The item's path. */
  path: string;
  /** The session that signed it (every replica verified the signature). */
  session: string;
  /** The user the session belongs to, when logged in ("" when anonymous or unknown here). */
  user: string;
  /** When it was written (ms since the epoch, the writer's clock). */
  timestamp: number;
  parents: string[];
  /** The schema it was written with (`ns@version`). */
  schema: string;
  /** Names of the changed fields. */
  changed: string[];
  /** Each changed field, before → after (in the schema version this app knows). */
  changes: FieldChange[];
}

/** Which part of an item's history to read (newest first by pages). */
export interface HistoryOptions {
  /** At most this many entries: the newest ones (before `before`). Every
   * entry carries whole values, so read a long history — a text edited a
   * character at a time — a page at a time. */
  limit?: number;
  /** Only entries that appeared before this commit (an id from an earlier
   * page: pass `entries[0].id` for the page before it). */
  before?: string;
}

/** A page of an item's history, oldest first, and the whole history's length. */
export interface HistoryPage {
  entries: HistoryEntry[];
  total: number;
}

/** One value of a field and who wrote it. */
export interface Written {
  id: string;
  session: string;
  user: string;
  timestamp: number;
  value: unknown;
}

/** A field two writers set concurrently: the value shown and those that lost. */
export interface Conflict {
  field: string;
  winner: Written;
  losers: Written[];
}

/** Whose changes, and when: for `db.audit` and `db.revert`. */
export interface ChangeFilter {
  repo: string;
  /** One session id or several. */
  session?: string | readonly string[];
  /** A user id (every session certified for that user). */
  user?: string;
  /** Inclusive bounds on the commits' timestamps. */
  since?: number | Date;
  until?: number | Date;
}

export interface RevertOptions extends ChangeFilter {
  /** Exactly these commits (e.g. the ids a previous revert returned). */
  commits?: readonly string[];
}

/** A point in the past: a time (Date or ms) or a commit id. */
export type At = Date | number | string;

const ms = (t: number | Date): number => (t instanceof Date ? t.getTime() : t);

function value(v: Value | undefined): unknown {
  return v === undefined ? undefined : fromWire(v);
}

export function toEntry(repo: string, e: WireEntry): HistoryEntry {
  return {
    id: e.id,
    path: `${repo}/${e.key}`,
    session: e.session,
    user: e.user,
    timestamp: e.timestamp,
    parents: e.parents,
    schema: `${e.ns}@${e.version}`,
    changed: e.changes.map((c) => c.field),
    changes: e.changes.map((c) => ({ field: c.field, before: value(c.before), after: value(c.after) })),
  };
}

function toWritten(w: WireWritten): Written {
  return { id: w.id, session: w.session, user: w.user, timestamp: w.timestamp, value: value(w.value) };
}

export function filterOf(f: ChangeFilter): HistoryFilter {
  const sessions = f.session === undefined ? [] : typeof f.session === "string" ? [f.session] : [...f.session];
  return {
    sessions,
    ...(f.user !== undefined ? { user: f.user } : {}),
    ...(f.since !== undefined ? { since: ms(f.since) } : {}),
    ...(f.until !== undefined ? { until: ms(f.until) } : {}),
  };
}

/** What the history functions need from their database. */
export interface HistoryHost {
  schemas: readonly Schema[];
  /** Opens `repo`, sends this database's pending writes, then asks the engine. */
  ask(repo: string, req: HistoryRequest): Promise<unknown>;
}

function readOnly(what: string, live: Live): ItemHost {
  return {
    checkWritable: () => {
      throw new IbexError("ERR_FORBIDDEN", `${what} is a read-only view of the past; write to the live item (db.item(path)) instead`);
    },
    enqueue: () => {},
    itemChanged: (item) => live.itemChanged(item),
    itemTouched: () => {},
    itemGone: () => {},
    // The past of a past item: ask the live one (db.item(path)).
    history: () => Promise.resolve([]),
    itemAt: () => Promise.resolve(undefined),
    revertItem: () => Promise.reject(new IbexError("ERR_FORBIDDEN", `${what} is a read-only view of the past; revert the live item instead`)),
    conflicts: () => Promise.resolve([]),
  };
}

/** A read-only copy of some items as they were, with live queries over it
 * (the same `Query` as the live database's). Writes throw ERR_FORBIDDEN. */
export class PastView {
  protected readonly live: Live;
  protected readonly mirror: Mirror;
  private ready = false;
  private readonly queries = new Set<Query<any>>();

  constructor(
    readonly repo: string,
    schemas: readonly Schema[],
    what: string,
  ) {
    this.live = new Live(() => this.ready);
    this.mirror = new Mirror(schemas, readOnly(what, this.live));
  }

  /** True until the past has been read from the engine. */
  get loading(): boolean {
    return !this.ready;
  }

  /** @internal applies a `heads` list; the first call marks the view loaded. */
  load(bytes: Uint8Array): void {
    const r = new HeadReader(bytes);
    const items: Item[] = [];
    while (r.next()) items.push(this.mirror.applyHead(r, false));
    this.ready = true;
    this.live.itemsLoaded(this.repo, items);
    // A query made before the past arrived hears once it is there.
    for (const q of this.queries) this.live.scheduleNotify(q);
  }

  /** The item at `path` in this view. */
  item<F extends Fields = Fields>(path: string): Item<F> | undefined {
    return this.mirror.at(path) as Item<F> | undefined;
  }

  /** A live query over this view (its `source` must be the view's repository). */
  query<F extends Fields>(opts: QueryOptions<F>): Query<F> {
    const q = new Query<F>(this.live, opts);
    if (q.repo !== this.repo) throw new IbexError("ERR_PATH", `this view holds ${this.repo}, not ${q.repo}`);
    this.live.add(q);
    this.queries.add(q);
    if (this.ready) q.insertMany(this.mirror.values(this.repo) as Iterable<Item<F>>);
    return q;
  }
}

/** One step of a playback: commit `id` appeared at `time` and changed `path`. */
export interface PlaybackStep {
  time: number;
  id: string;
  path: string;
}

/** A repository's history replayed into a read-only view, step by step or
 * at a speed: queries over it change as the list changed. */
export class Playback extends PastView {
  /** Every step between `from` and `to`, in order. */
  steps: readonly PlaybackStep[] = [];
  private heads: Head[] = [];
  private startHeads = new Map<string, Head>();
  private pos = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Set<() => void>();
  private startTime = 0;

  /** @internal */
  constructor(repo: string, schemas: readonly Schema[]) {
    super(repo, schemas, `A playback of ${repo}`);
  }

  /** @internal */
  loadPlayback(p: { start: Uint8Array; heads: Uint8Array; steps: Uint8Array }, from: number): void {
    const meta = readSteps(p.steps);
    const r = new HeadReader(p.heads);
    const heads: Head[] = [];
    while (r.next()) heads.push(r.head());
    this.heads = heads;
    this.steps = meta.map((m, i) => ({ time: m.time, id: m.id, path: `${this.repo}/${heads[i]!.key}` }));
    this.startTime = from;
    this.load(p.start);
    this.emit();
  }

  /** Steps applied so far (0 = the repository at `from`). */
  get position(): number {
    return this.pos;
  }

  /** The time the view shows. */
  get time(): number {
    return this.pos === 0 ? this.startTime : this.steps[this.pos - 1]!.time;
  }

  get playing(): boolean {
    return this.timer !== null;
  }

  /** Called after every move (step, seek, play, pause). */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const l of [...this.listeners]) l();
  }

  /** The head step `i` replaced: the item's previous step, or the start. */
  private headBefore(i: number, key: string): Head | undefined {
    for (let j = i - 1; j >= 0; j--) if (this.heads[j]!.key === key) return this.heads[j];
    return this.startHeads.get(key);
  }

  /** @internal */
  override load(bytes: Uint8Array): void {
    const r = new HeadReader(bytes);
    while (r.next()) this.startHeads.set(r.key, r.head());
    super.load(bytes);
  }

  private apply(i: number): void {
    this.mirror.applyHead(this.heads[i]!, true);
  }

  private unapply(i: number): void {
    const h = this.heads[i]!;
    const before = this.headBefore(i, h.key);
    // An item the step created did not exist before it.
    if (before) this.mirror.applyHead(before, true);
    else this.mirror.get(h.repo, h.key)?.vanish();
  }

  /** Moves to step `n` (0 … steps.length), applying or undoing steps. */
  seek(n: number): void {
    const to = Math.max(0, Math.min(this.steps.length, Math.floor(n)));
    while (this.pos < to) this.apply(this.pos++);
    while (this.pos > to) this.unapply(--this.pos);
    this.emit();
  }

  /** Moves to the last step at or before `time`. */
  seekTime(time: number | Date): void {
    const t = ms(time);
    let n = 0;
    while (n < this.steps.length && this.steps[n]!.time <= t) n++;
    this.seek(n);
  }

  /** One step forward; false at the end. */
  step(): boolean {
    if (this.pos >= this.steps.length) return false;
    this.seek(this.pos + 1);
    return true;
  }

  back(): boolean {
    if (this.pos === 0) return false;
    this.seek(this.pos - 1);
    return true;
  }

  /** Plays forward: `speed` × real time between steps (each wait capped
   * at `maxWaitMs`), from where the view is. */
  play({ speed = 1, maxWaitMs = 1_000 }: { speed?: number; maxWaitMs?: number } = {}): void {
    this.pause();
    const next = () => {
      if (this.pos >= this.steps.length) {
        this.timer = null;
        this.emit();
        return;
      }
      const wait = Math.min(maxWaitMs, Math.max(0, (this.steps[this.pos]!.time - this.time) / speed));
      this.timer = setTimeout(() => {
        this.step();
        next();
      }, wait);
    };
    next();
    this.emit();
  }

  pause(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** The history functions of a database (see the methods of `IbexDB`). */
export class History {
  constructor(private readonly host: HistoryHost) {}

  async page(repo: string, key: string, opts: HistoryOptions = {}): Promise<HistoryPage> {
    const { limit, before } = opts;
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0 && limit <= 0xffff_ffff)) {
      throw new IbexError("ERR_VALIDATION", `history: limit must be a whole number from 0 to 4294967295 (got ${limit})`);
    }
    const req: HistoryRequest = { op: "history", repo, key, ...(before !== undefined ? { before } : {}), ...(limit !== undefined ? { limit } : {}) };
    const { total, entries } = readPage((await this.host.ask(repo, req)) as Uint8Array);
    return { total, entries: entries.map((e) => toEntry(repo, e)) };
  }

  /** The item as it was: a read-only Item, or undefined if it did not exist. */
  async itemAt<F extends Fields>(repo: string, key: string, at: At): Promise<Item<F> | undefined> {
    const req: HistoryRequest = typeof at === "string" ? { op: "itemAt", repo, key, commit: at } : { op: "itemAt", repo, key, time: ms(at) };
    const bytes = (await this.host.ask(repo, req)) as Uint8Array;
    const view = new PastView(repo, this.host.schemas, `${repo}/${key} at ${typeof at === "string" ? at.slice(0, 12) : new Date(ms(at)).toISOString()}`);
    view.load(bytes);
    return view.item<F>(`${repo}/${key}`);
  }

  /** A query over the repository as it was at `at`: loading until the past arrives. */
  queryAt<F extends Fields>(opts: QueryOptions<F>, at: number | Date): Query<F> {
    const repo = typeof opts.source === "string" ? opts.source : opts.source.repo;
    const view = new PastView(repo, this.host.schemas, `${repo} at ${new Date(ms(at)).toISOString()}`);
    const q = view.query(opts);
    void this.host.ask(repo, { op: "snapshotAt", repo, time: ms(at) }).then((bytes) => view.load(bytes as Uint8Array));
    return q;
  }

  async playback(repo: string, from: number | Date, to: number | Date): Promise<Playback> {
    const p = new Playback(repo, this.host.schemas);
    const answer = (await this.host.ask(repo, { op: "playback", repo, from: ms(from), to: ms(to) })) as {
      start: Uint8Array;
      heads: Uint8Array;
      steps: Uint8Array;
    };
    p.loadPlayback(answer, ms(from));
    return p;
  }

  async conflicts(repo: string, key: string): Promise<Conflict[]> {
    const bytes = (await this.host.ask(repo, { op: "conflicts", repo, key })) as Uint8Array;
    return readConflicts(bytes).map((c) => ({ field: c.field, winner: toWritten(c.winner), losers: c.losers.map(toWritten) }));
  }

  async audit(f: ChangeFilter): Promise<HistoryEntry[]> {
    const bytes = (await this.host.ask(f.repo, { op: "audit", repo: f.repo, filter: filterOf(f) })) as Uint8Array;
    return readEntries(bytes).map((e) => toEntry(f.repo, e));
  }

  async revert(o: RevertOptions): Promise<string[]> {
    const commits = o.commits ? [...o.commits] : [];
    if (commits.length === 0 && o.session === undefined && o.user === undefined) {
      throw new IbexError("ERR_VALIDATION", "db.revert needs `session`, `user` or `commits`: reverting everyone's changes is not a revert", { field: "session" });
    }
    return (await this.host.ask(o.repo, { op: "revert", repo: o.repo, commits, filter: filterOf(o) })) as string[];
  }

  async restore(repo: string, key: string, commit: string): Promise<string | undefined> {
    return (await this.host.ask(repo, { op: "restore", repo, key, commit })) as string | undefined;
  }
}
