// Starting the engine worker from the page.

import type { EngineChannel, FromEngine, ToEngine } from "./protocol.js";
import type { BootMessage } from "./worker.js";

export function workerChannel(name: string, storage: BootMessage["storage"], server?: string): EngineChannel {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: `ibex:${name}` });
  let handler: (m: FromEngine) => void = () => {};
  worker.onmessage = (e: MessageEvent<FromEngine>) => handler(e.data);
  worker.onerror = (e) => handler({ t: "error", code: "ERR_WORKER", message: `Engine worker error: ${e.message}` });
  // A server given as a page-relative URL ("/") becomes ws(s)://host/sync.
  const url = server === undefined ? undefined : new URL(server.endsWith("/sync") ? server : `${server.replace(/\/$/, "")}/sync`, location.href);
  if (url) url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
  worker.postMessage({ t: "boot", name, storage, ...(url ? { server: url.toString() } : {}) } satisfies BootMessage);
  // Network emulation and some platforms only tell the page.
  addEventListener("offline", () => worker.postMessage({ t: "network", online: false } satisfies ToEngine));
  addEventListener("online", () => worker.postMessage({ t: "network", online: true } satisfies ToEngine));
  return {
    post: (m: ToEngine) => worker.postMessage(m, m.t === "mutate" ? [m.batch.buffer as ArrayBuffer] : []),
    onMessage: (h) => {
      handler = h;
    },
    terminate: () => worker.terminate(),
  };
}
