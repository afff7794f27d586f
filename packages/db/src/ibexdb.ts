// IbexDB.open: the Database plus where its engine runs. Which engine home
// exists depends on the entry that was loaded (package.json "exports"):
// browsers and bundlers get index.js (a worker), Node gets index.node.js
// (in-process, files, the `ws` WebSocket). Keeping Node's code out of the
// browser entry is what lets bundlers build it without node: built-ins.

import { Database, type OpenOptions } from "./main/database.js";
import { IbexError } from "./wire/errors.js";
import type { EngineChannel } from "./wire/protocol.js";

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

/** How an entry starts the engine for `open` (not exported by the package). */
export interface Platform {
  channel(opts: IbexOpenOptions): EngineChannel | Promise<EngineChannel>;
  /** Flush when the page goes away (browsers). */
  onPageHide?(flush: () => void): void;
}

let platform: Platform | null = null;

/** Called once by the entry module (not exported by the package). */
export function setPlatform(p: Platform): void {
  platform = p;
}

export class IbexDB extends Database {
  /** Starts the engine and loads `repos`; other repositories load on first use. */
  static async open(opts: IbexOpenOptions): Promise<IbexDB> {
    if (!platform) throw new IbexError("ERR_CONFIG", "@ibexdb/db was loaded without an entry: import it as \"@ibexdb/db\"");
    const channel = platform.channel(opts);
    const db = new IbexDB(channel instanceof Promise ? await channel : channel, opts);
    await db.start();
    platform.onPageHide?.(() => void db.flush().catch(() => {}));
    await Promise.all((opts.repos ?? []).map((r) => db.open(r)));
    return db;
  }
}
