// @ibexdb/db for Node (the "node" export condition): the engine runs in
// this thread, with repositories in files (`{ dir }`) or in memory, and
// syncs over the `ws` WebSocket.

import { setPlatform } from "./ibexdb.js";
import { inProcessChannel, MemoryStorage, NodeDirStorage, nodeEngineFactory } from "./node/index.js";
import { IbexError } from "./wire/errors.js";

export * from "./api.js";

setPlatform({
  async channel(opts) {
    const storage = opts.storage ?? "memory";
    if (storage !== "memory" && typeof storage !== "object") {
      throw new IbexError("ERR_STORAGE", `Storage ${JSON.stringify(storage)} is not available in Node: use { dir } or "memory" (browsers use "opfs", "indexeddb" or "memory")`);
    }
    const provider = storage === "memory" ? new MemoryStorage() : new NodeDirStorage(storage.dir);
    return inProcessChannel(await nodeEngineFactory(), provider, opts.server);
  },
});
