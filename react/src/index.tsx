// @ibexdb/react: a thin adapter. Each hook is a few lines of
// useSyncExternalStore over an observer that lives in @ibexdb/db, with a
// snapshot that changes only when that hook's own data changes — so an edit
// re-renders only the components that show it.

import { type Conflict, type Fields, type HistoryEntry, IbexDB, type Schema, type IbexOpenOptions, type Item, type Playback, type Query, type QueryOptions, type Status, type User, queryKey } from "@ibexdb/db";
import { type ReactNode, createContext, useCallback, useContext, useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { useSyncExternalStoreWithSelector } from "use-sync-external-store/with-selector";

const DBContext = createContext<IbexDB | null>(null);

/** Databases opened by `<IbexProvider options>`, one per name, so StrictMode's
 * double mount (or two providers) never opens the same database twice. */
const opened = new Map<string, Promise<IbexDB>>();

function openOnce(options: IbexOpenOptions): Promise<IbexDB> {
  let p = opened.get(options.name);
  if (!p) {
    p = IbexDB.open(options);
    opened.set(options.name, p);
    p.catch(() => opened.delete(options.name));
  }
  return p;
}

export type IbexProviderProps =
  | { db: IbexDB; children?: ReactNode }
  | {
      options: IbexOpenOptions;
      children?: ReactNode;
      /** Rendered while the database opens. */
      fallback?: ReactNode;
      /** Rendered instead of the children if it cannot open (a worker or
       * WASM module that did not load, storage refused): an element, or a
       * function of the error. Without it the error is rethrown during
       * render, for an error boundary. */
      errorFallback?: ReactNode | ((error: unknown) => ReactNode);
      onError?: (e: unknown) => void;
    };

/** Makes a database available to the hooks: pass an open `db`, or `options`
 * to open one (children render once it is open; `fallback` until then). */
export function IbexProvider(props: IbexProviderProps) {
  const given = "db" in props ? props.db : null;
  const [db, setDb] = useState<IbexDB | null>(given);
  const options = "options" in props ? props.options : null;
  const onError = "onError" in props ? props.onError : undefined;
  // Boxed: the error itself may be any value, even undefined.
  const [failed, setFailed] = useState<{ error: unknown } | null>(null);
  useEffect(() => {
    if (given || !options) return;
    let live = true;
    openOnce(options).then(
      (d) => live && setDb(d),
      (e) => {
        onError?.(e);
        if (live) setFailed({ error: e });
      },
    );
    return () => {
      live = false;
    };
    // The database is identified by its name; other option changes need a new name.
  }, [given, options?.name]);
  const current = given ?? db;
  if (!current && failed) {
    const ef = "errorFallback" in props ? props.errorFallback : undefined;
    if (ef === undefined) throw failed.error;
    return <>{typeof ef === "function" ? ef(failed.error) : ef}</>;
  }
  if (!current) return <>{"fallback" in props ? props.fallback : null}</>;
  return <DBContext.Provider value={current}>{props.children}</DBContext.Provider>;
}

/** The database of the nearest `<IbexProvider>`. */
function useContextDB(): IbexDB {
  const db = useContext(DBContext);
  if (!db) throw new Error("useDB/useQuery/useItem must be used inside <IbexProvider>");
  return db;
}

/** The database. Re-renders when the logged-in user changes (login,
 * logout), so components can read `db.user` and pick repositories by it. */
export function useDB(): IbexDB {
  const db = useContextDB();
  const subscribe = useMemo(() => (cb: () => void) => db.onStatus(cb), [db]);
  useSyncExternalStore(
    subscribe,
    () => db.status.user,
    () => db.status.user,
  );
  return db;
}

/** The logged-in user (`{id, email}`) or null; re-renders on change. */
export function useUser(): User | null {
  return useStatusSelect(
    (s) => s.user,
    (a, b) => a?.id === b?.id && a?.email === b?.email,
  );
}

export interface DBReady {
  state: "loading" | "ready" | "error";
  /** Items loaded so far, of `total`, over the repositories being opened. */
  progress: { loaded: number; total: number };
  error?: Error;
}

/** A value selected from `db.status`; re-renders only when `equal` says it changed. */
function useStatusSelect<R>(select: (s: Status) => R, equal: (a: R, b: R) => boolean): R {
  const db = useContextDB();
  const subscribe = useMemo(() => (cb: () => void) => db.onStatus(cb), [db]);
  return useSyncExternalStoreWithSelector(subscribe, () => db.status, () => db.status, select, equal);
}

/** Loading state and progress; re-renders only when they change. */
export function useDBReady(): DBReady {
  return useStatusSelect(
    (s): DBReady => ({
      state: s.phase === "error" ? "error" : s.phase === "loading" || s.phase === "starting" ? "loading" : "ready",
      progress: { loaded: s.loaded, total: s.total },
      ...(s.error ? { error: s.error } : {}),
    }),
    (a, b) => a.state === b.state && a.progress.loaded === b.progress.loaded && a.progress.total === b.progress.total && a.error === b.error,
  );
}

export interface SyncStatus {
  /** Connected to the sync server (`server` option of IbexDB.open). */
  online: boolean;
  /** Every open repository holds the same commits as the server. */
  synced: boolean;
  /** Writes this tab made that the engine has not stored yet. */
  pendingWrites: number;
  lastSync: Date | null;
}

/** Online state and pending writes; re-renders only when they change. */
export function useSyncStatus(): SyncStatus {
  return useStatusSelect(
    (s): SyncStatus => ({ online: s.online, synced: s.synced, pendingWrites: s.pendingWrites, lastSync: s.lastSync === null ? null : new Date(s.lastSync) }),
    (a, b) => a.online === b.online && a.synced === b.synced && a.pendingWrites === b.pendingWrites && a.lastSync?.getTime() === b.lastSync?.getTime(),
  );
}

/** A live query's results. The array (and this component's render) changes
 * only when membership or order changes; render rows with `useItem` so a
 * row re-renders when its own item changes. */
export function useQuery<F extends Fields>(opts: PlainQueryOptions<F>, deps?: readonly unknown[]): readonly Item<F>[];
/** With a `where` (or a `sortBy` comparator), `deps` lists the values the
 * function reads (`[]` if none), as with useMemo: equal options share one
 * query, and a function's captured values are invisible otherwise. */
export function useQuery<F extends Fields>(opts: QueryOptions<F>, deps: readonly unknown[]): readonly Item<F>[];
export function useQuery<F extends Fields>(opts: QueryOptions<F>, deps?: readonly unknown[]): readonly Item<F>[] {
  return useQueryObject(opts, deps as readonly unknown[]).results;
}

/** Query options without functions: they need no `deps`. */
export type PlainQueryOptions<F extends Fields> = QueryOptions<F> & { where?: undefined; sortBy?: keyof F & string };

/** The shared query for these options, and a subscribe that retains it. */
function useSharedQuery<F extends Fields>(opts: QueryOptions<F>, deps: readonly unknown[] | undefined) {
  const db = useContextDB();
  // Throws ERR_CONFIG for a function without `deps` (see queryKey).
  const key = queryKey(opts as QueryOptions<any>, deps);
  const shared = useMemo(() => db.sharedQuery(opts, deps), [db, key]);
  const subscribe = useCallback(
    (cb: () => void) => {
      const release = shared.retain();
      const off = shared.query.subscribe(cb);
      return () => {
        off();
        release();
      };
    },
    [shared],
  );
  return { query: shared.query, subscribe };
}

/** Like `useQuery`, returning the `Query` (for `count`, `loading`, …). */
export function useQueryObject<F extends Fields>(opts: PlainQueryOptions<F>, deps?: readonly unknown[]): Query<F>;
export function useQueryObject<F extends Fields>(opts: QueryOptions<F>, deps: readonly unknown[]): Query<F>;
export function useQueryObject<F extends Fields>(opts: QueryOptions<F>, deps?: readonly unknown[]): Query<F> {
  const { query, subscribe } = useSharedQuery(opts, deps);
  useSyncExternalStore(subscribe, () => query.results);
  return query;
}

/** A value derived from a live query (`q => q.count`, `q => q.count > 0`);
 * re-renders only when that value changes (`Object.is`). */
export function useQuerySelect<F extends Fields, R>(opts: PlainQueryOptions<F>, select: (q: Query<F>) => R, deps?: readonly unknown[]): R;
export function useQuerySelect<F extends Fields, R>(opts: QueryOptions<F>, select: (q: Query<F>) => R, deps: readonly unknown[]): R;
export function useQuerySelect<F extends Fields, R>(opts: QueryOptions<F>, select: (q: Query<F>) => R, deps?: readonly unknown[]): R {
  const { query, subscribe } = useSharedQuery(opts, deps);
  return useSyncExternalStoreWithSelector(subscribe, () => query.results, () => query.results, () => select(query));
}

/** The number of items a query matches; re-renders only when it changes. */
export function useQueryCount<F extends Fields>(opts: PlainQueryOptions<F>, deps?: readonly unknown[]): number;
export function useQueryCount<F extends Fields>(opts: QueryOptions<F>, deps: readonly unknown[]): number;
export function useQueryCount<F extends Fields>(opts: QueryOptions<F>, deps?: readonly unknown[]): number {
  return useQuerySelect(opts, (q) => q.count, deps as readonly unknown[]);
}

/** The item at a path (or the given item), re-rendering when it changes;
 * `undefined` while it does not exist or its repository is loading. */
export function useItem<F extends Fields>(path: string | undefined | null, schema: Schema<F>): Item<F> | undefined;
export function useItem<F extends Fields = Fields>(pathOrItem: string | Item<F> | undefined | null): Item<F> | undefined;
/** With `schema`, the item is typed by it (`todo.get("done")` is a
 * boolean), and an item of another schema throws ERR_VALIDATION. */
export function useItem<F extends Fields = Fields>(pathOrItem: string | Item<F> | undefined | null, schema?: Schema<F>): Item<F> | undefined {
  const db = useContextDB();
  const path = typeof pathOrItem === "string" ? pathOrItem : (pathOrItem?.path ?? null);
  const subscribe = useCallback((cb: () => void) => (path ? db.watchItem(path, cb) : () => {}), [db, path]);
  const snapshot = () => {
    if (!path) return -1;
    const it = db.item(path);
    return it ? it.revision : -1;
  };
  useSyncExternalStore(subscribe, snapshot, snapshot);
  return path ? (schema ? db.item(path, schema) : db.item<F>(path)) : undefined;
}

/** Asks the engine again whenever the item gets a commit; `initial` until the
 * first answer. Errors go to the console and keep the last answer. */
function useItemAnswer<T>(item: Item<any> | undefined | null, ask: (item: Item<any>) => Promise<T>, initial: T, keyOf: (t: T) => string, askKey = ""): T {
  const db = useContextDB();
  const [answer, setAnswer] = useState<T>(initial);
  // The same answer again (most edits change no conflict) renders nothing.
  const update = (a: T) => setAnswer((prev) => (keyOf(prev) === keyOf(a) ? prev : a));
  const path = item?.path ?? null;
  useEffect(() => {
    if (!path) {
      setAnswer(initial);
      return;
    }
    let live = true;
    let asked = 0;
    const refresh = () => {
      const it = db.item(path);
      if (!it) return;
      const n = ++asked;
      ask(it).then(
        (a) => live && n === asked && update(a),
        (e) => console.error(`@ibexdb/react: could not read the history of ${path}`, e),
      );
    };
    refresh();
    // Every new commit, also one that left the value as it was (the
    // concurrent write that lost is exactly what a conflict shows).
    const stop = db.watchCommits(path, refresh);
    return () => {
      live = false;
      stop();
    };
    // `ask` and `initial` are fixed per hook below, up to `askKey`.
  }, [db, path, askKey]);
  return answer;
}

const NO_CONFLICTS: readonly Conflict[] = Object.freeze([]);
const NO_HISTORY: readonly HistoryEntry[] = Object.freeze([]);

/** The item's unsettled conflicts (see `item.conflicts()`), kept current
 * as the item changes: e.g. a badge showing the value that lost. */
export function useConflicts(item: Item<any> | undefined | null): readonly Conflict[] {
  return useItemAnswer(item, (it) => it.conflicts(), NO_CONFLICTS, (cs) => cs.map((c) => [c.field, c.winner.id, ...c.losers.map((l) => l.id)].join(":")).join("|"));
}

/** The item's history (see `item.history()`), kept current as it changes.
 * `{ limit }` keeps only the newest entries (a long history costs its
 * page, not its length). */
export function useHistory(item: Item<any> | undefined | null, opts?: { limit?: number }): readonly HistoryEntry[] {
  const limit = opts?.limit;
  return useItemAnswer(item, (it) => it.history(limit === undefined ? undefined : { limit }), NO_HISTORY, (h) => h.map((e) => e.id).join(","), String(limit));
}

/** Re-renders on every move of a playback (step, seek, play, pause). */
export function usePlayback(playback: Playback | null | undefined): number {
  const subscribe = useCallback((cb: () => void) => (playback ? playback.subscribe(cb) : () => {}), [playback]);
  const snapshot = () => (playback ? playback.position * 2 + (playback.playing ? 1 : 0) : -1);
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}
