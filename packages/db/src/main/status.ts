// The database's status — phase, loading progress, pending writes, sync —
// and who listens to it and to errors that outlive the call that caused
// them.

import type { IbexError } from "../wire/errors.js";
import type { LoadReport, User } from "../wire/protocol.js";

export type Phase = "starting" | "loading" | "ready" | "error" | "closed";

export interface RepoStatus {
  phase: "loading" | "ready" | "error";
  /** Items applied to the in-memory mirror so far, of `total`. */
  loaded: number;
  total: number;
  report?: LoadReport;
  error?: IbexError;
}

export interface Status {
  phase: Phase;
  /** Items loaded so far and expected, over all repositories being opened. */
  loaded: number;
  total: number;
  repos: Readonly<Record<string, RepoStatus>>;
  /** Writes not yet durable on this device (0: everything written so far
   * is on storage — what a "saved" indicator may show). */
  pendingWrites: number;
  error?: IbexError;
  sessionId?: string;
  /** Version reported by the WASM engine, once it runs. */
  engine?: string;
  /** Where data is kept: "opfs", "indexeddb", "files" or "memory". */
  storage?: string;
  /** Connected to the sync server. */
  online: boolean;
  /** Every open repository holds the same commits as the server, and the
   * server acknowledged every local commit as durable. */
  synced: boolean;
  /** When the replica was last in sync with the server (ms since epoch). */
  lastSync: number | null;
  /** Local commits the server has not yet acknowledged as durable. */
  unsynced: number;
  /** This tab runs the engine (the others follow it); see multi-tab in the README. */
  leader: boolean;
  /** The logged-in user, or null for an anonymous session. */
  user: User | null;
}

export interface EngineStats {
  /** Bytes of WebAssembly memory of the engine (in the worker, or in process in Node). */
  engineMemoryBytes: number;
}

export class StatusBoard {
  private state: Status = { phase: "starting", loaded: 0, total: 0, repos: {}, pendingWrites: 0, online: false, synced: false, lastSync: null, unsynced: 0, leader: false, user: null };
  private listeners = new Set<(s: Status) => void>();
  private errorListeners = new Set<(e: IbexError) => void>();

  get current(): Status {
    return this.state;
  }

  onStatus(listener: (s: Status) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onError(listener: (e: IbexError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** A new status object (the old one stays valid for whoever holds it). */
  publish(patch: Partial<Status>): void {
    this.state = { ...this.state, ...patch };
    for (const l of [...this.listeners]) l(this.state);
  }

  /** Tells the error listeners; with none, the console (never silence). */
  emitError(e: IbexError): void {
    if (this.errorListeners.size === 0) console.error(e);
    for (const l of [...this.errorListeners]) l(e);
  }
}
