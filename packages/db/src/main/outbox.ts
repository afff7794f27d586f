// Writes on their way to the engine. Changes made in one task go out as one
// batch (a microtask later), numbered; each batch gets one outcome per
// write back. A batch stays "unsure" until the engine says it is durable,
// and is re-sent to a new engine after a leader hand-over (re-applying a
// batch changes nothing). A write that fails is undone in the mirror and
// reported: to `onError` listeners, and by the next `flush()` rejecting.

import { type Change, type Mutation, type Outcome, writeMutations } from "../wire/codec.js";
import { IbexError, toIbexError } from "../wire/errors.js";
import type { ToEngine } from "../wire/protocol.js";
import type { Item } from "./item.js";

export interface OutboxDeps {
  post(m: ToEngine): void;
  isLoaded(repo: string): boolean;
  /** Loads a repository; a batch for it waits until it has loaded. */
  open(repo: string): Promise<void>;
  /** The number of pending writes changed. */
  changed(): void;
  error(e: IbexError): void;
}

/** Failed writes remembered for `flush()`; older ones were reported to
 * `onError` already and are dropped past this many. */
const MAX_FAILURES = 1_000;

export class Outbox {
  private queued = new Map<Item<any>, true>();
  private scheduled = false;
  /** Settles once every batch taken from the queue so far was posted (a
   * batch for a repository that is still loading waits for it). */
  private posted: Promise<void> = Promise.resolve();
  private deferred = 0;
  private seq = 0;
  /** Items of each batch waiting for its outcomes, in batch order. */
  private inFlight = new Map<number, Item<any>[]>();
  /** Writes of batches not yet durable, by sequence number (a refused
  * write is dropped from its batch: a new engine must not retry it). */
  private unsure = new Map<number, (Mutation | null)[]>();
  /** Writes in `unsure` (not refused), kept as a count: status updates
   * on every acknowledgement must not cost O(batches in flight). */
  private unsureWrites = 0;
  /** Writes of batches held back until their repository loads. */
  private waitingWrites = 0;
  private failures: { seq: number; error: IbexError }[] = [];

  constructor(private readonly deps: OutboxDeps) {}

  /** Writes not yet durable on this device: queued, or sent and not yet
   * flushed to storage by the engine (what "saved" must wait for). */
  get pending(): number {
    return this.queued.size + this.waitingWrites + this.unsureWrites;
  }

  /** The sequence number of the last batch posted. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Queues an item's changes for the next batch. */
  enqueue(item: Item<any>, changes: Change[]): void {
    item.queue(changes);
    if (!this.queued.has(item)) {
      this.queued.set(item, true);
      // One more unsaved write: the status says so at once.
      this.deps.changed();
    }
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => void this.flush());
    }
  }

  /** Posts queued writes; resolves once they and all earlier batches are
   * posted, so any request sent afterwards reaches the engine after them. */
  flush(): Promise<void> {
    this.scheduled = false;
    if (this.queued.size === 0) return this.posted;
    const items = [...this.queued.keys()];
    this.queued.clear();
    const repos = [...new Set(items.map((i) => i.repo))];
    const send = () => {
      const seq = ++this.seq;
      const ms: Mutation[] = items.map((i) => ({ repo: i.repo, key: i.key, ns: i.schema.ns, version: i.schema.version, changes: i.send(seq) }));
      this.inFlight.set(seq, items);
      this.unsure.set(seq, ms);
      this.unsureWrites += ms.length;
      this.deps.post({ t: "mutate", seq, batch: writeMutations(ms) });
      this.deps.changed();
    };
    if (this.deferred === 0 && repos.every((r) => this.deps.isLoaded(r))) {
      // The common case: post now, in order, with no added latency.
      send();
      return this.posted;
    }
    // The engine applies writes on top of what is stored, so a batch for a
    // repository that is still loading waits for it — and every later batch
    // and request waits behind it.
    this.deferred++;
    this.waitingWrites += items.length;
    this.posted = Promise.all([this.posted, ...repos.map((r) => this.deps.open(r))]).then(
      () => {
        this.deferred--;
        this.waitingWrites -= items.length;
        send();
      },
      (e) => {
        this.deferred--;
        this.waitingWrites -= items.length;
        // The repository did not load: these writes cannot be made.
        const error = toIbexError(e);
        for (const item of items) item.rejectQueued();
        this.deps.error(error);
      },
    );
    return this.posted;
  }

  /** The engine's outcomes for batch `seq`, one per write in order. A
   * missing outcome (a batch the engine could not read) is a failure. */
  outcomes(seq: number, outcomes: readonly Outcome[]): void {
    const items = this.take(seq);
    items.forEach((item, i) => {
      const o = outcomes[i] ?? { status: "failed", code: "ERR_DECODE", message: "the engine could not read this write" };
      if (o.status === "failed") {
        const error = toIbexError({ code: o.code, message: `Write to ${item.path} failed: ${o.message}` });
        const batch = this.unsure.get(seq);
        if (batch?.[i]) {
          batch[i] = null;
          this.unsureWrites--;
        }
        this.failed(seq, item, new IbexError(error.code, error.message, { path: item.path }));
      } else {
        item.acknowledged(seq);
      }
    });
    this.deps.changed();
  }

  /** The engine could not handle batch `seq` at all: every write failed. */
  batchFailed(seq: number, error: IbexError): void {
    this.forget(seq);
    for (const item of this.take(seq)) this.failed(seq, item, new IbexError(error.code, `Write to ${item.path} failed: ${error.message}`, { path: item.path }));
    this.deps.changed();
  }

  private take(seq: number): Item<any>[] {
    const items = this.inFlight.get(seq) ?? [];
    this.inFlight.delete(seq);
    return items;
  }

  private failed(seq: number, item: Item<any>, error: IbexError): void {
    item.rejected(seq);
    this.failures.push({ seq, error });
    if (this.failures.length > MAX_FAILURES) this.failures.splice(0, this.failures.length - MAX_FAILURES);
    this.deps.error(error);
  }

  /** Failures of batches in `(after, upTo]`, for `flush()`. */
  failuresBetween(after: number, upTo: number): IbexError[] {
    return this.failures.filter((f) => f.seq > after && f.seq <= upTo).map((f) => f.error);
  }

  /** Every batch up to `seq` is on storage. */
  durable(seq: number): void {
    for (const s of [...this.unsure.keys()]) if (s <= seq) this.forget(s);
    this.deps.changed();
  }

  private forget(seq: number): void {
    const ms = this.unsure.get(seq);
    if (!ms) return;
    this.unsure.delete(seq);
    for (const m of ms) if (m) this.unsureWrites--;
  }

  /** Re-sends every batch not known durable, in order (a new engine). */
  replay(): void {
    for (const [seq, ms] of [...this.unsure].sort((a, b) => a[0] - b[0])) {
      const kept = ms.filter((m) => m !== null);
      // A batch keeps its number even if empty: outcomes match batches by it.
      this.deps.post({ t: "mutate", seq, batch: writeMutations(kept) });
    }
  }
}
