// What items and queries need from their database — a narrow interface, so
// neither reaches into the database's internals and none of these methods
// is part of the public API (`IbexDB` does not have them).

import type { Change } from "../wire/codec.js";
import type { At, Conflict, HistoryEntry, HistoryOptions } from "./history.js";
import type { Item } from "./item.js";
import type { Query } from "./query.js";

export interface ItemHost {
  /** Throws ERR_CLOSED or ERR_FORBIDDEN, changing nothing, if `repo` cannot be written now. */
  checkWritable(repo: string): void;
  /** Queues an item's changes for the next batch to the engine. */
  enqueue(item: Item<any>, changes: Change[]): void;
  /** An item's value changed (written here, or arriving from the engine). */
  itemChanged(item: Item<any>): void;
  /** The engine reported a new commit of the item that left its value as
   * it was (a concurrent write that lost, a merge): its history changed. */
  itemTouched(item: Item<any>): void;
  /** A locally created item whose creation failed is gone again. */
  itemGone(item: Item<any>): void;
  history(path: string, opts?: HistoryOptions): Promise<HistoryEntry[]>;
  /** The item as it was (read-only), or undefined before it existed. */
  itemAt(path: string, at: At): Promise<Item<any> | undefined>;
  /** Writes the item's value at `commit` as a new commit. */
  revertItem(path: string, commit: string): Promise<string | undefined>;
  conflicts(path: string): Promise<Conflict[]>;
}

export interface QueryHost {
  isLoaded(repo: string): boolean;
  /** Queues one notification of `q` for the end of the current batch. */
  scheduleNotify(q: Query<any>): void;
  forgetQuery(q: Query<any>): void;
}
