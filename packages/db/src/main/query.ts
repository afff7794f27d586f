// Live queries, maintained incrementally: a change re-evaluates only the
// changed item; sorted results are kept by binary insertion (in blocks, see
// sorted.ts); subscribers hear once per batch; `results` is a new array only
// when it changed.

import type { QueryHost } from "./internal.js";
import type { Item } from "./item.js";
import type { Fields, Schema } from "./schema.js";
import { SortedList } from "./sorted.js";

export interface QueryOptions<F extends Fields> {
  /** A repository path (`/data/todos`) or another query to refine. */
  source: string | Query<F>;
  /** Only items of this schema namespace (any version). */
  schema?: Schema<F>;
  where?: (item: Item<F>) => boolean;
  /** A field name, or a comparator. Ties are broken by item path. */
  sortBy?: (keyof F & string) | ((a: Item<F>, b: Item<F>) => number);
  descending?: boolean;
  /** Keep only the first `limit` results (after sorting). */
  limit?: number;
  /** Include soft-deleted items (default false). */
  includeDeleted?: boolean;
  /** Evaluate over the repository as it was at this time (Date or ms): a
   * read-only snapshot, `loading` until it is read; live queries are not
   * disturbed. */
  at?: number | Date;
}

function compareField(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export class Query<F extends Fields = Fields> {
  /** The matching items in order (sorted.ts: no O(n) step per change). */
  private readonly matches: SortedList<Item<F>>;
  private member = new Set<Item<F>>();
  /** The sort key each member had when it was placed (only when sorted by
   * a field: for other orders an item's place does not depend on its
   * values, and a map entry per member would cost memory for nothing). */
  private placedKey: Map<Item<F>, unknown> | null = null;
  private cached: readonly Item<F>[] | null = null;
  private listeners = new Set<() => void>();
  private dependents = new Set<Query<any>>();
  private dirty = false;
  private closed = false;
  private readonly compare: (a: Item<F>, b: Item<F>) => number;
  private readonly sortKey: (i: Item<F>) => unknown;

  /** @internal */
  constructor(
    private readonly db: QueryHost,
    readonly options: QueryOptions<F>,
  ) {
    const { sortBy, descending } = options;
    const sign = descending ? -1 : 1;
    // Items of one repository (every item of a query) compare by key as by
    // path, without making their path strings.
    const byPath = (a: Item<F>, b: Item<F>) => {
      const x = a.repo === b.repo ? a.key : a.path;
      const y = a.repo === b.repo ? b.key : b.path;
      return x < y ? -1 : x > y ? 1 : 0;
    };
    if (typeof sortBy === "function") {
      this.sortKey = () => undefined;
      this.compare = (a, b) => sign * sortBy(a, b) || byPath(a, b);
    } else if (typeof sortBy === "string") {
      this.placedKey = new Map();
      this.sortKey = (i) => i.get(sortBy);
      this.compare = (a, b) => sign * compareField(this.keyOf(a), this.keyOf(b)) || byPath(a, b);
    } else {
      this.sortKey = () => undefined;
      this.compare = byPath;
    }
    this.matches = new SortedList(this.compare);
    if (typeof options.source !== "string") options.source.dependents.add(this);
  }

  private keyOf(i: Item<F>): unknown {
    const p = this.placedKey!;
    return p.has(i) ? p.get(i) : this.sortKey(i);
  }

  /** The repository this query reads from. */
  get repo(): string {
    return typeof this.options.source === "string" ? this.options.source : this.options.source.repo;
  }

  /** True until the source repository has loaded. */
  get loading(): boolean {
    return !this.db.isLoaded(this.repo);
  }

  /** Matching items, sorted, at most `limit`. A new array only when it changed. */
  get results(): readonly Item<F>[] {
    if (!this.cached) {
      const all = this.options.limit !== undefined ? this.matches.first(this.options.limit) : this.matches.toArray();
      this.cached = Object.freeze(all);
    }
    return this.cached;
  }

  /** Number of matching items (ignores `limit`). */
  get count(): number {
    return this.matches.size;
  }

  has(item: Item<F>): boolean {
    return this.member.has(item);
  }

  /** Called once per batch of changes that changed `results` or `count`. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.closed = true;
    this.listeners.clear();
    if (typeof this.options.source !== "string") this.options.source.dependents.delete(this);
    this.db.forgetQuery(this);
  }

  private accepts(item: Item<F>): boolean {
    const { source, schema, where, includeDeleted } = this.options;
    if (item.gone) return false;
    if (typeof source !== "string" && !source.member.has(item)) return false;
    if (!includeDeleted && item.isDeleted) return false;
    if (schema && item.schema.ns !== schema.ns) return false;
    return where ? where(item) : true;
  }

  /** @internal re-evaluates one item; true if the results changed. */
  update(item: Item<F>): boolean {
    if (this.closed) return false;
    const was = this.member.has(item);
    const now = this.accepts(item);
    let changed = false;
    if (was) {
      const moved = !now || typeof this.options.sortBy === "function" || (this.placedKey !== null && compareField(this.sortKey(item), this.placedKey.get(item)) !== 0);
      if (moved) {
        // Located by the key it was placed with.
        this.matches.remove(item);
        this.member.delete(item);
        this.placedKey?.delete(item);
        changed = true;
      } else {
        // Same place: the array is unchanged, but the item's content is.
        this.forward(item);
        return false;
      }
    }
    if (now && !this.member.has(item)) {
      this.placedKey?.set(item, this.sortKey(item));
      this.matches.insert(item);
      this.member.add(item);
      changed = true;
    }
    if (changed) {
      this.cached = null;
      this.markDirty();
    }
    this.forward(item);
    return changed;
  }

  private forward(item: Item<F>): void {
    for (const d of this.dependents) d.update(item);
  }

  private markDirty(): void {
    if (this.dirty) return;
    this.dirty = true;
    this.db.scheduleNotify(this);
  }

  /** @internal delivers one notification for the whole batch. */
  notify(): void {
    if (!this.dirty) return;
    this.dirty = false;
    for (const l of [...this.listeners]) l();
  }

  /** @internal adds many items at once (a new query, a loaded slice):
   * members are re-evaluated one by one; new matches are sorted together
   * and inserted (appended in blocks when they all sort last). */
  insertMany(items: Iterable<Item<F>>): void {
    if (this.closed) return;
    const fresh: Item<F>[] = [];
    for (const it of items) {
      if (this.member.has(it)) this.update(it);
      else if (this.accepts(it)) fresh.push(it);
    }
    if (fresh.length === 0) return;
    for (const it of fresh) {
      this.placedKey?.set(it, this.sortKey(it));
      this.member.add(it);
    }
    fresh.sort(this.compare);
    this.matches.insertSorted(fresh);
    this.cached = null;
    this.markDirty();
    for (const d of this.dependents) d.insertMany(fresh);
  }


}
