// Where an engine keeps its data: the interface every platform implements
// (OPFS and IndexedDB in browser_storage.ts, files in node/, memory here).

import type { LoadReport } from "../wire/protocol.js";
import type { WasmEngine } from "./wasm_engine.js";

/** Where an engine keeps its repositories and its session seed. */
export interface StorageProvider {
  /** `"opfs"`, `"indexeddb"`, `"files"` or `"memory"`, for `db.status`. */
  readonly kind: string;
  /** The session's private seed, created (with `fresh`) and kept on first use. */
  sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array>;
  /** Small named values kept with the database (`session.seed`, `root`). */
  readMeta(name: string): Promise<Uint8Array | null>;
  writeMeta(name: string, value: Uint8Array): Promise<void>;
  /** Opens repository `repo` in `engine`, returning its load report. */
  open(engine: WasmEngine, repo: string): Promise<LoadReport>;
  /** Resolves once everything flushed so far is durable. */
  durable?(): Promise<void>;
  close?(): void;
}

/** Nothing persists; a new session each time. */
export class MemoryStorage implements StorageProvider {
  readonly kind = "memory";
  private meta = new Map<string, Uint8Array>();

  async readMeta(name: string): Promise<Uint8Array | null> {
    return this.meta.get(name) ?? null;
  }

  async writeMeta(name: string, value: Uint8Array): Promise<void> {
    this.meta.set(name, value);
  }

  async sessionSeed(fresh: () => Uint8Array): Promise<Uint8Array> {
    return fresh();
  }

  async open(engine: WasmEngine, repo: string): Promise<LoadReport> {
    return engine.openMemory(repo);
  }
}

