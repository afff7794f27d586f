// Starting the engine worker from the page.

import type { EngineChannel, FromEngine, ToEngine } from "./protocol.js";
import type { BootMessage } from "./worker.js";

export function workerChannel(name: string, storage: BootMessage["storage"]): EngineChannel {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: `ibex:${name}` });
  let handler: (m: FromEngine) => void = () => {};
  worker.onmessage = (e: MessageEvent<FromEngine>) => handler(e.data);
  worker.onerror = (e) => handler({ t: "error", code: "ERR_WORKER", message: `Engine worker error: ${e.message}` });
  worker.postMessage({ t: "boot", name, storage } satisfies BootMessage);
  return {
    post: (m: ToEngine) => worker.postMessage(m, m.t === "mutate" ? [m.batch.buffer as ArrayBuffer] : []),
    onMessage: (h) => {
      handler = h;
    },
    terminate: () => worker.terminate(),
  };
}
