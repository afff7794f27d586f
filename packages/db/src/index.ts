// @ibexdb/db for browsers and bundlers — a local-first, Git-like database
// with synchronous reads and writes. See the README for the API tour. The
// engine runs in a module worker; nothing here imports Node built-ins
// (Node resolves index.node.ts through the "node" export condition).

import { setPlatform } from "./ibexdb.js";
import { workerChannel } from "./main/tabs.js";
import { IbexError } from "./wire/errors.js";

export * from "./api.js";

// `process` is not declared here (no Node types in the browser entry).
const inNode = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== undefined;

setPlatform({
  channel(opts) {
    const storage = opts.storage ?? "opfs";
    if (inNode) {
      throw new IbexError("ERR_CONFIG", "This is @ibexdb/db's browser entry, loaded in Node: Node resolves the \"node\" export condition to dist/index.node.js; a bundler building for Node must keep that condition (e.g. esbuild --platform=node)");
    }
    if (typeof storage === "object") {
      throw new IbexError("ERR_STORAGE", `Storage ${JSON.stringify(storage)} is not available here: browsers use "opfs", "indexeddb" or "memory"; Node uses { dir } or "memory"`);
    }
    // Synchronously: the worker starts (and the WASM module compiles) the
    // moment `open` is called.
    return workerChannel(opts.name, storage, opts.server);
  },
  onPageHide(flush) {
    // Best effort when the page goes away (the engine also flushes on its own).
    if (typeof addEventListener === "function") addEventListener("pagehide", flush);
  },
});
