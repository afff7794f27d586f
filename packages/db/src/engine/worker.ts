// The dedicated module worker that runs the WASM engine in browsers. The
// leader tab starts it (main/tabs.ts) and sends a `boot` message first.

import init, { Engine, version } from "../../wasm/ibex_wasm.js";

import { IdbProvider, OpfsProvider, opfsAvailable } from "./browser_storage.js";
import type { BootMessage, Envelope, FromEngine, ModuleMessage, Recipient, ToEngine } from "../wire/protocol.js";
import { EngineHost } from "./host.js";
import { MemoryStorage, type StorageProvider } from "./storage.js";
import type { WasmEngine } from "./wasm_engine.js";
// Imported by the modules above, named here too so the browser fetches the
// whole module graph at once instead of one level of imports at a time
// (the worker's start is on the path of every `IbexDB.open`).
import "./sync_client.js";
import "../wire/codec.js";
import "../wire/errors.js";

const scope = self as unknown as DedicatedWorkerGlobalScope;
let host: EngineHost | null = null;
const early: ToEngine[] = [];
/** The WASM instance: from the module the tab compiled (`module`), else
 * compiled here at boot. */
let wasm: Promise<unknown> | null = null;

function transferables(m: FromEngine): Transferable[] {
  if (m.t === "opened" || m.t === "moreHeads") return [m.heads.buffer as ArrayBuffer];
  if (m.t === "outcomes" || m.t === "changed") return [m.bytes.buffer as ArrayBuffer];
  return [];
}

function provider(boot: BootMessage): StorageProvider {
  if (boot.storage === "memory") return new MemoryStorage();
  if (boot.storage === "opfs" && opfsAvailable()) return new OpfsProvider(boot.name);
  // Where OPFS sync access handles are missing: the same log in IndexedDB.
  return new IdbProvider(boot.name);
}

scope.onmessage = async (e: MessageEvent<ToEngine | BootMessage | ModuleMessage>) => {
  const msg = e.data;
  if (msg.t === "module") {
    // Instantiated at once, while the tab still waits for its lock.
    wasm ??= init({ module_or_path: msg.module as WebAssembly.Module });
    return;
  }
  if (msg.t === "boot") {
    try {
      await (wasm ??= init());
      const factory = {
        create: (seed: Uint8Array, schemas: Uint8Array): WasmEngine => new Engine(seed, schemas),
        newSessionSeed: () => Engine.newSessionSeed(),
        version: () => version(),
      };
      // Tabs: this worker's own tab is "self" (postMessage); followers reach
      // it over the database's BroadcastChannel (browser.ts).
      const bc = new BroadcastChannel(`ibex:${msg.name}`);
      const deliver = (m: FromEngine, to: Recipient) => {
        if (typeof to === "string") {
          if (to === "self") scope.postMessage(m, transferables(m));
          else bc.postMessage({ to, msg: m } satisfies Envelope);
          return;
        }
        // Clone to followers first: posting to our tab transfers the buffers.
        bc.postMessage({ to: "*", ...(to.except ? { except: to.except } : {}), msg: m } satisfies Envelope);
        if (to.except !== "self") scope.postMessage(m, transferables(m));
      };
      host = new EngineHost(factory, provider(msg), deliver, msg.server);
      const s = host;
      // Set once another tab has shown up (followers never say goodbye).
      let followers = false;
      s.hasFollowers = () => followers;
      bc.onmessage = (e: MessageEvent<Envelope>) => {
        const d = e.data;
        if ("hello" in d) {
          followers = true;
          bc.postMessage({ to: d.hello, msg: { t: "leader", leader: false } } satisfies Envelope);
        } else if ("from" in d && d.to === "leader") {
          followers = true;
          s.handle(d.msg, d.from);
        }
      };
      // A new leader: followers that talked to the previous one re-send.
      bc.postMessage({ to: "*", msg: { t: "leader", leader: false } } satisfies Envelope);
      for (const m of early.splice(0)) host.handle(m);
    } catch (err) {
      scope.postMessage({ t: "error", code: "ERR_WORKER", message: `The engine failed to start: ${err instanceof Error ? err.message : String(err)}` });
    }
    return;
  }
  if (host) host.handle(msg);
  else early.push(msg);
};
