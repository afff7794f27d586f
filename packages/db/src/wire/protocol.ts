// Messages between the SDK (main thread) and the engine (a worker in the
// browser, in-process in Node), and between tabs sharing one engine.
// Payloads that scale with data are bytes (see codec.ts); everything else
// is small structured-clone objects.

import type { HistoryRequest } from "./history.js";

export interface LoadReport {
  commits: number;
  items: number;
  truncatedBytes: number;
  pending: number;
  corrupt: { offset: number; length: number; reason: string }[];
  rejected: { offset: number; code: string; message: string }[];
  /** How opening used the checkpoint beside the log: "used (N records after
   * it)", "created", "rebuilt: <why it could not be trusted>", or "none". */
  checkpoint: string;
  /** The log was in this older format and was converted to the current one
   * while opening (null: it was not). */
  convertedFrom: number | null;
}

/** The user a session belongs to. */
export interface User {
  id: string;
  /** Known once the server has confirmed it ("" until then). */
  email: string;
}

export type ToEngine =
  | { t: "init"; schemas: Uint8Array }
  | { t: "open"; id: number; repo: string }
  | { t: "mutate"; seq: number; batch: Uint8Array }
  | { t: "flush"; id: number }
  | { t: "stats"; id: number }
  /** History questions and reverts (wire/history.ts). */
  | { t: "history"; id: number; req: HistoryRequest }
  | { t: "export"; id: number; repo: string }
  | { t: "import"; id: number; repo: string; image: Uint8Array }
  | { t: "close"; id: number }
  | { t: "sync"; id: number; timeoutMs: number }
  | { t: "login"; id: number; email: string }
  | { t: "redeem"; id: number; token: string }
  | { t: "loginInfo"; id: number; token: string }
  | { t: "logout"; id: number }
  /** The page's view of the network (workers do not always see it). */
  | { t: "network"; online: boolean };

export type FromEngine =
  | { t: "ready"; sessionId: string; engine: string; storage: string; user: User | null }
  /** A repository is open: the first of its heads in key order, and how
   * many it has (`total`); when `heads` holds fewer, a `moreHeads` with the
   * same id follows with the others (listing them takes a while, and a
   * query's first rows should not wait for it). */
  | { t: "opened"; id: number; repo: string; report: LoadReport; heads: Uint8Array; total: number; writable: boolean }
  | { t: "moreHeads"; id: number; repo: string; heads: Uint8Array }
  /** The session's user changed (login, logout); which open repositories it may write. */
  | { t: "user"; user: User | null; sessionId: string; writable: Record<string, boolean> }
  /** One outcome per write of batch `seq`, in order (`outcomes` in codec.ts). */
  | { t: "outcomes"; seq: number; bytes: Uint8Array }
  /** The engine could not handle batch `seq` at all: every write in it failed. */
  | { t: "batchFailed"; seq: number; code: string; message: string }
  | { t: "changed"; bytes: Uint8Array }
  | { t: "syncStatus"; online: boolean; synced: boolean; lastSync: number | null; unacked: number }
  /** Every batch of this tab up to `seq` is on storage (flushed). */
  | { t: "durable"; seq: number }
  /** Synthesized by the channel: a (new) engine serves this tab now;
   * `leader` says whether this tab runs it. */
  | { t: "leader"; leader: boolean }
  | { t: "done"; id: number; value?: unknown }
  | { t: "error"; id?: number; code: string; message: string };

/** Who a message is for: one tab, every tab, or every tab but one. */
export type Recipient = string | { all: true; except?: string };

/** A two-way channel to the engine. */
export interface EngineChannel {
  post(msg: ToEngine): void;
  onMessage(handler: (msg: FromEngine) => void): void;
  terminate(): void;
}

/** The first message a tab sends the worker it starts (main/tabs.ts →
 * engine/worker.ts). */
export interface BootMessage {
  t: "boot";
  name: string;
  storage: "opfs" | "indexeddb" | "memory";
  /** ws(s):// URL of the server's sync endpoint. */
  server?: string;
}

/** The engine's compiled WebAssembly module, sent by the tab that starts
 * a worker (before `boot`), so that each page compiles it once. */
export interface ModuleMessage {
  t: "module";
  /** A `WebAssembly.Module` (wire/ is typed without platform globals). */
  module: object;
}

/** What tabs of one database say on its BroadcastChannel `ibex:<name>`:
 * the leader tab's worker runs the engine; the other tabs ask for it and
 * talk to it here (main/tabs.ts, engine/worker.ts). */
export type Envelope =
  /** A tab looking for the leader. */
  | { hello: string }
  /** A follower tab's message for the engine. */
  | { to: "leader"; from: string; msg: ToEngine }
  /** The engine's message for one tab, or for every tab (`"*"`) but `except`. */
  | { to: string; except?: string; msg: FromEngine };
