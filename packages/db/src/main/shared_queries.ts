// Live queries shared by everyone asking with the same options (the React
// hooks: every `useQuery` with equal options reads one query), collected
// when nobody retains them.

import { IbexError } from "../wire/errors.js";
import type { Query, QueryOptions } from "./query.js";

/** A shared query and the way to keep it alive. */
export interface SharedQuery<Q> {
  query: Q;
  /** Keeps the query alive until the returned release is called. */
  retain(): () => void;
}

/** The identity of query options, compared by value. Functions (`where`, a
 * `sortBy` comparator) are compared by their source text, which cannot see
 * the variables they capture, so they need `deps` — the values they read,
 * as with React's useMemo (`[]` when they read none). Without `deps` two
 * filters with the same text but different captured values would share one
 * query and silently show the same results, so that is an error. */
export function queryKey(opts: QueryOptions<any>, deps: readonly unknown[] | undefined): string {
  const fns = [opts.where ? "where" : null, typeof opts.sortBy === "function" ? "sortBy" : null].filter((x) => x !== null);
  if (fns.length && deps === undefined) {
    throw new IbexError(
      "ERR_CONFIG",
      `a shared query's \`${fns.join("` and `")}\` is a function: pass \`deps\`, the values it reads (\`[]\` if none), e.g. useQuery({ source, where: (t) => t.get("done") === done }, [done])`,
    );
  }
  const src = opts.source;
  return JSON.stringify([
    typeof src === "string" ? src : `query:${src.repo}:${identity(src)}`,
    opts.schema?.id ?? null,
    opts.where ? String(opts.where) : null,
    typeof opts.sortBy === "function" ? String(opts.sortBy) : (opts.sortBy ?? null),
    opts.descending ?? false,
    opts.limit ?? null,
    opts.includeDeleted ?? false,
    opts.at === undefined ? null : opts.at instanceof Date ? opts.at.getTime() : opts.at,
    deps ?? [],
  ]);
}

const ids = new WeakMap<object, number>();
let nextId = 1;
function identity(q: object): number {
  let id = ids.get(q);
  if (!id) ids.set(q, (id = nextId++));
  return id;
}

interface Entry {
  query: Query<any>;
  users: number;
  timer: ReturnType<typeof setTimeout> | null;
}

export class SharedQueries {
  private entries = new Map<string, Entry>();

  /** The query for `key`, made by `make` if nobody holds one. A query
   * nobody retains closes after `gcMs`, so one created during a render
   * that never commits does not leak. */
  get<Q extends Query<any>>(key: string, make: () => Q, gcMs: number): SharedQuery<Q> {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { query: make(), users: 0, timer: null };
      this.entries.set(key, entry);
    }
    const e = entry;
    const collect = () => {
      if (e.timer) clearTimeout(e.timer);
      e.timer = setTimeout(() => {
        if (e.users === 0 && this.entries.get(key) === e) {
          this.entries.delete(key);
          e.query.close();
        }
      }, gcMs);
    };
    if (e.users === 0) collect();
    return {
      query: e.query as Q,
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

  /** Number of shared queries alive (for tests and diagnostics). */
  get size(): number {
    return this.entries.size;
  }
}
