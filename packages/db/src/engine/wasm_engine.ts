// What the engine host needs from the WASM module (rust/wasm/src/engine.rs,
// built by wasm-bindgen). The worker and Node assign wasm-bindgen's
// generated `Engine` (wasm/ibex_wasm.d.ts) to this interface without a
// cast, so a method renamed or retyped on the Rust side fails `tsc -b`.

import type { LoadReport, User } from "../wire/protocol.js";

/** The parts of the wasm-bindgen `Engine` the host uses. */
export interface WasmEngine {
  readonly sessionId: string;
  /** Gives the engine's memory back (after `close`; wasm-bindgen's). */
  free(): void;
  /** `checkpoint`: where the repository's checkpoint lives (rust/core/src/checkpoint.rs). */
  openBackend(repo: string, backend: LogBackend, checkpoint?: LogBackend): LoadReport;
  openMemory(repo: string): LoadReport;
  openOpfs?(repo: string, handle: FileSystemSyncAccessHandle, checkpoint?: FileSystemSyncAccessHandle): LoadReport;
  /** Heads of items `from .. from + count` in key order. */
  heads(repo: string, from: number, count: number): Uint8Array;
  itemCount(repo: string): number;
  mutate(batch: Uint8Array, now: number): Uint8Array;
  mutatedHeads(): Uint8Array;
  changed(): Uint8Array;
  flush(): void;
  /** Flushes, then writes every open repository's checkpoint. */
  checkpoint(): void;
  /** History (rust/wasm/src/database/history.rs for the bytes). */
  history(repo: string, key: string, before?: string, limit?: number): Uint8Array;
  itemAt(repo: string, key: string, time?: number | null, commit?: string | null): Uint8Array;
  snapshotAt(repo: string, time: number): Uint8Array;
  playback(repo: string, from: number, to: number): any;
  conflicts(repo: string, key: string): Uint8Array;
  audit(repo: string, sessions: string[], user: string | null | undefined, since: number | null | undefined, until: number | null | undefined): Uint8Array;
  revert(repo: string, commits: string[], sessions: string[], user: string | null | undefined, since: number | null | undefined, until: number | null | undefined, now: number): string[];
  restore(repo: string, key: string, commit: string, now: number): string | undefined;
  export(repo: string): Uint8Array;
  syncConnected(now: number): void;
  syncDisconnected(): void;
  syncReceive(frame: Uint8Array, now: number): void;
  syncTick(now: number): void;
  syncFrames(): Uint8Array;
  syncNow(): void;
  syncDone(): void;
  syncComplete(now: number): boolean;
  synced(now: number): boolean;
  readonly unacked: number;
  refused(): unknown[];
  denied(): unknown[];
  import(repo: string, image: Uint8Array): { added: number; rejected: number };
  close(repo: string): void;
  setSession(seed: Uint8Array): void;
  trustRoot(root: string): void;
  takeEvents(): EngineEvent[];
  readonly user: User | null;
  canWrite(repo: string): boolean;
  readonly rejectedCount: number;
  readonly memoryBytes: number;
  login(email: string): void;
  redeem(token: string): void;
  loginInfo(token: string): void;
  logout(): void;
}

/** A connection event reported by the engine (rust/wasm/src/database.rs). */
export type EngineEvent =
  | { t: "root"; root: string }
  | { t: "welcome"; user: string; email: string; expires: number }
  | { t: "error"; repo: string; code: string; message: string }
  | { t: "rejected"; repo: string; code: string; message: string }
  | { t: "loginSent"; email: string }
  | { t: "loginIs"; email: string };

/** Synchronous file-like storage (rust/wasm/src/js_storage.rs). */
export interface LogBackend {
  size(): number;
  read(offset: number, length: number): Uint8Array;
  append(bytes: Uint8Array): void;
  flush(): void;
  truncate(length: number): void;
}

export interface EngineFactory {
  create(seed: Uint8Array, schemas: Uint8Array): WasmEngine;
  newSessionSeed(): Uint8Array;
  /** The engine build's version, reported by the WASM module itself. */
  version(): string;
}

