// @ibexdb/db — a local-first, Git-like database with synchronous reads and
// writes. See the README for the API tour.

import { Database, type OpenOptions } from "./main/database.js";
import { workerChannel } from "./main/tabs.js";
import { IbexError } from "./wire/errors.js";
import type { EngineChannel } from "./wire/protocol.js";

export type { OpenOptions } from "./main/database.js";
export type { EngineStats, Phase, RepoStatus, Status } from "./main/status.js";
export { queryKey, type SharedQuery } from "./main/shared_queries.js";
export { IbexError, type ErrorCode, ENGINE_CODES, SDK_CODES } from "./wire/errors.js";
export { Item } from "./main/item.js";
export type { HistoryEntry, LoadReport, User } from "./wire/protocol.js";
export { Query, type QueryOptions } from "./main/query.js";
export {
  defineSchema,
  type FieldDef,
  type FieldType,
  type FieldTypes,
  type FieldValue,
  type TextFields,
  type Fields,
  type FieldsOf,
  type InitData,
  type ItemData,
  type Scalar,
  type Schema,
  type UpgradeStep,
} from "./main/schema.js";

/** Where the engine keeps data: OPFS (browsers), IndexedDB, memory, or a
 * directory (Node). */
export type StorageOption = "opfs" | "indexeddb" | "memory" | { dir: string };

export interface IbexOpenOptions extends OpenOptions {
  /** Default: `"opfs"` in browsers, `"memory"` in Node. */
  storage?: StorageOption;
  /** The ibex-server to sync with, e.g. `"/"` (this page's origin) or
   * `"https://example.com"`; the engine connects to its `/sync` endpoint.
   * In Node, an absolute URL (`"http://127.0.0.1:8080"`). */
  server?: string;
}

const isNode = typeof process !== "undefined" && !!process.versions?.node;

/** The channel to the engine. In browsers synchronously: the worker starts
 * (and the WASM module compiles) the moment `open` is called. */
function createChannel(opts: IbexOpenOptions): EngineChannel | Promise<EngineChannel> {
  const storage = opts.storage ?? (isNode ? "memory" : "opfs");
  if (isNode && (storage === "memory" || typeof storage === "object")) {
    return (async () => {
      const node = await import("./node/index.js");
      const provider = storage === "memory" ? new node.MemoryStorage() : new node.NodeDirStorage(storage.dir);
      return node.inProcessChannel(await node.nodeEngineFactory(), provider, opts.server);
    })();
  }
  if (typeof storage === "object" || isNode) {
    throw new IbexError("ERR_STORAGE", `Storage ${JSON.stringify(storage)} is not available here: browsers use "opfs", "indexeddb" or "memory"; Node uses { dir } or "memory"`);
  }
  return workerChannel(opts.name, storage, opts.server);
}

export class IbexDB extends Database {
  /** Starts the engine and loads `repos`; other repositories load on first use. */
  static async open(opts: IbexOpenOptions): Promise<IbexDB> {
    const channel = createChannel(opts);
    const db = new IbexDB(channel instanceof Promise ? await channel : channel, opts);
    await db.start();
    if (!isNode && typeof addEventListener === "function") {
      // Best effort when the page goes away (the engine also flushes on its own).
      addEventListener("pagehide", () => void db.flush().catch(() => {}));
    }
    await Promise.all((opts.repos ?? []).map((r) => db.open(r)));
    return db;
  }
}
