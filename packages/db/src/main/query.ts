// Live queries, maintained incrementally: a change re-evaluates only the
// changed item; sorted results are kept by binary insertion; subscribers
// hear once per batch; `results` is a new array only when it changed.

import type { QueryHost } from "./internal.js";
import type { Item } from "./item.js";
import type { Fields, Schema } from "./schema.js";

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
  private matches: Item<F>[] = [];
  private member = new Set<Item<F>>();
  /** The sort key each member had when it was placed. */
  private placedKey = new Map<Item<F>, unknown>();
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
    const byPath = (a: Item<F>, b: Item<F>) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    if (typeof sortBy === "function") {
      this.sortKey = () => undefined;
      this.compare = (a, b) => sign * sortBy(a, b) || byPath(a, b);
    } else if (typeof sortBy === "string") {
      this.sortKey = (i) => i.get(sortBy);
      this.compare = (a, b) => sign * compareField(this.keyOf(a), this.keyOf(b)) || byPath(a, b);
    } else {
      this.sortKey = () => undefined;
      this.compare = byPath;
    }
    if (typeof options.source !== "string") options.source.dependents.add(this);
  }

  private keyOf(i: Item<F>): unknown {
    return this.placedKey.has(i) ? this.placedKey.get(i) : this.sortKey(i);
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
      const all = this.options.limit !== undefined ? this.matches.slice(0, this.options.limit) : this.matches.slice();
      this.cached = Object.freeze(all);
    }
    return this.cached;
  }

  /** Number of matching items (ignores `limit`). */
  get count(): number {
    return this.matches.length;
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

  private position(item: Item<F>): number {
    // Binary search for the first member that sorts at or after `item`.
    let lo = 0;
    let hi = this.matches.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(this.matches[mid]!, item) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** @internal re-evaluates one item; true if the results changed. */
  update(item: Item<F>): boolean {
    if (this.closed) return false;
    const was = this.member.has(item);
    const now = this.accepts(item);
    let changed = false;
    if (was) {
      const newKey = this.sortKey(item);
      const moved = !now || compareField(newKey, this.placedKey.get(item)) !== 0 || typeof this.options.sortBy === "function";
      if (moved) {
        // Locate it by the key it was placed with, then drop it.
        const at = this.position(item);
        const idx = this.matches[at] === item ? at : this.matches.indexOf(item);
        this.matches.splice(idx, 1);
        this.member.delete(item);
        this.placedKey.delete(item);
        changed = true;
      } else {
        // Same place: the array is unchanged, but the item's content is.
        this.forward(item);
        return false;
      }
    }
    if (now && !this.member.has(item)) {
      this.placedKey.set(item, this.sortKey(item));
      this.matches.splice(this.position(item), 0, item);
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
   * and merged into the results in one pass, O(n + k log k). */
  insertMany(items: Iterable<Item<F>>): void {
    if (this.closed) return;
    const fresh: Item<F>[] = [];
    for (const it of items) {
      if (this.member.has(it)) this.update(it);
      else if (this.accepts(it)) fresh.push(it);
    }
    if (fresh.length === 0) return;
    for (const it of fresh) {
      this.placedKey.set(it, this.sortKey(it));
      this.member.add(it);
    }
    fresh.sort(this.compare);
    const old = this.matches;
    const out: Item<F>[] = new Array(old.length + fresh.length);
    let i = 0;
    let j = 0;
    let k = 0;
    while (i < old.length && j < fresh.length) out[k++] = this.compare(old[i]!, fresh[j]!) <= 0 ? old[i++]! : fresh[j++]!;
    while (i < old.length) out[k++] = old[i++]!;
    while (j < fresh.length) out[k++] = fresh[j++]!;
    this.matches = out;
    this.cached = null;
    this.markDirty();
    for (const d of this.dependents) d.insertMany(fresh);
  }
}
