// Who hears about a changed item: live queries over its repository and
// watchers of its path. Query notifications are coalesced to one per query
// per batch (a microtask).

import type { QueryHost } from "./internal.js";
import type { Item } from "./item.js";
import type { Query } from "./query.js";

export class Live implements QueryHost {
  private queries = new Set<Query<any>>();
  private watchers = new Map<string, Set<() => void>>();
  private notifyQueue = new Set<Query<any>>();
  private notifyScheduled = false;

  constructor(readonly isLoaded: (repo: string) => boolean) {}

  get size(): number {
    return this.queries.size;
  }

  add(q: Query<any>): void {
    this.queries.add(q);
  }

  forgetQuery(q: Query<any>): void {
    this.queries.delete(q);
  }

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

  /** Calls `listener` whenever the item at `path` changes (or appears). */
  watch(path: string, listener: () => void): () => void {
    return listen(this.watchers, path, listener);
  }

  /** An item's value changed: re-evaluate it in every live query. */
  itemChanged(item: Item<any>): void {
    for (const q of this.queries) if (q.repo === item.repo && typeof q.options.source === "string") q.update(item);
    if (this.watchers.size) this.notifyWatchers(item);
    if (this.commitWatchers.size) this.itemTouched(item);
  }

  private commitWatchers = new Map<string, Set<() => void>>();

  /** Calls `listener` on every new commit of the item at `path`, whether or
   * not its value changed. */
  watchCommits(path: string, listener: () => void): () => void {
    return listen(this.commitWatchers, path, listener);
  }

  /** A new commit of an item (its value may be unchanged). */
  itemTouched(item: Item<any>): void {
    const ws = this.commitWatchers.get(item.path);
    if (ws) for (const w of [...ws]) w();
  }

  /** A slice of a loading repository reached the mirror: each live query
   * merges the new matches in at once (one sort of the slice and one merge)
   * instead of one sorted insertion per item, which is quadratic when heads
   * arrive in another order than the query's. */
  itemsLoaded(repo: string, items: Item<any>[]): void {
    for (const q of this.queries) if (q.repo === repo && typeof q.options.source === "string") q.insertMany(items);
    if (this.watchers.size) for (const item of items) this.notifyWatchers(item);
  }

  private notifyWatchers(item: Item<any>): void {
    const watchers = this.watchers.get(item.path);
    if (watchers) for (const w of [...watchers]) w();
  }
}

/** Adds `listener` to the set at `path`; returns its removal (the set goes
 * when empty). */
function listen(map: Map<string, Set<() => void>>, path: string, listener: () => void): () => void {
  let set = map.get(path);
  if (!set) {
    set = new Set();
    map.set(path, set);
  }
  set.add(listener);
  return () => {
    set.delete(listener);
    if (set.size === 0) map.delete(path);
  };
}
