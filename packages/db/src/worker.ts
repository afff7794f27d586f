// The dedicated module worker that runs the WASM engine in browsers. The
// SDK starts it (browser.ts) and sends a `boot` message first.

import init, { Engine, version } from "../wasm/ibex_wasm.js";

import { IdbProvider, OpfsProvider, opfsAvailable } from "./browser_storage.js";
import { EngineServer, MemoryStorage, type StorageProvider, type WasmEngine } from "./engine_server.js";
import type { FromEngine, Recipient, ToEngine } from "./protocol.js";

export interface BootMessage {
  t: "boot";
  name: string;
  storage: "opfs" | "indexeddb" | "memory";
  /** ws(s):// URL of the server's sync endpoint. */
  server?: string;
}

const scope = self as unknown as DedicatedWorkerGlobalScope;
let server: EngineServer | null = null;
const early: ToEngine[] = [];

function transferables(m: FromEngine): Transferable[] {
  if (m.t === "opened") return [m.heads.buffer as ArrayBuffer];
  if (m.t === "outcomes" || m.t === "changed") return [m.bytes.buffer as ArrayBuffer];
  return [];
}

function provider(boot: BootMessage): StorageProvider {
  if (boot.storage === "memory") return new MemoryStorage();
  if (boot.storage === "opfs" && opfsAvailable()) return new OpfsProvider(boot.name);
  // Where OPFS sync access handles are missing: the same log in IndexedDB.
  return new IdbProvider(boot.name);
}

scope.onmessage = async (e: MessageEvent<ToEngine | BootMessage>) => {
  const msg = e.data;
  if (msg.t === "boot") {
    try {
      await init();
      const factory = {
        create: (seed: Uint8Array, schemas: Uint8Array) => new Engine(seed, schemas) as unknown as WasmEngine,
        newSessionSeed: () => Engine.newSessionSeed(),
        version: () => version(),
      };
      // Tabs: this worker's own tab is "self" (postMessage); followers reach
      // it over the database's BroadcastChannel (browser.ts).
      const bc = new BroadcastChannel(`ibex:${msg.name}`);
      const deliver = (m: FromEngine, to: Recipient) => {
        if (typeof to === "string") {
          if (to === "self") scope.postMessage(m, transferables(m));
          else bc.postMessage({ to, msg: m });
          return;
        }
        // Clone to followers first: posting to our tab transfers the buffers.
        bc.postMessage({ to: "*", except: to.except, msg: m });
        if (to.except !== "self") scope.postMessage(m, transferables(m));
      };
      server = new EngineServer(factory, provider(msg), deliver, msg.server);
      const s = server;
      // Set once another tab has shown up (followers never say goodbye).
      let followers = false;
      s.hasFollowers = () => followers;
      bc.onmessage = (e: MessageEvent<{ to?: string; from?: string; msg?: ToEngine; hello?: string }>) => {
        const d = e.data;
        if (d.hello || d.from) followers = true;
        if (d.hello) bc.postMessage({ to: d.hello, msg: { t: "leader", leader: false } satisfies FromEngine });
        else if (d.to === "leader" && d.from && d.msg) s.handle(d.msg, d.from);
      };
      // A new leader: followers that talked to the previous one re-send.
      bc.postMessage({ to: "*", msg: { t: "leader", leader: false } satisfies FromEngine });
      for (const m of early.splice(0)) server.handle(m);
    } catch (err) {
      scope.postMessage({ t: "error", code: "ERR_WORKER", message: `The engine failed to start: ${err instanceof Error ? err.message : String(err)}` });
    }
    return;
  }
  if (server) server.handle(msg);
  else early.push(msg);
};
