// Requests to the engine that wait for an answer (`done` or `error` with
// the same id), kept until answered so they can be re-sent to a new engine
// after a leader hand-over.

import type { IbexError } from "../wire/errors.js";
import type { ToEngine } from "../wire/protocol.js";

/** Messages that expect an answer (they carry an `id`). */
export type RequestMessage = Extract<ToEngine, { id: number }>;
type WithoutId<M> = M extends unknown ? Omit<M, "id"> : never;

interface Waiting {
  resolve: (v: unknown) => void;
  reject: (e: IbexError) => void;
  msg: RequestMessage;
}

export class Requests {
  private waiting = new Map<number, Waiting>();
  private next = 1;

  constructor(private readonly post: (m: ToEngine) => void) {}

  /** Sends `msg` with a fresh id; resolves with the engine's answer. */
  send(msg: WithoutId<RequestMessage>): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const m = { ...msg, id } as RequestMessage;
      this.waiting.set(id, { resolve, reject, msg: m });
      this.post(m);
    });
  }

  /** Removes and returns the request `id` (for answers handled by the caller). */
  take(id: number): Waiting | undefined {
    const w = this.waiting.get(id);
    this.waiting.delete(id);
    return w;
  }

  /** Rejects request `id`; false if there is no such request. */
  reject(id: number, e: IbexError): boolean {
    const w = this.take(id);
    w?.reject(e);
    return w !== undefined;
  }

  /** Re-sends every unanswered request, oldest first (a new engine). */
  replay(): void {
    for (const [, w] of [...this.waiting].sort((a, b) => a[0] - b[0])) this.post(w.msg);
  }
}
