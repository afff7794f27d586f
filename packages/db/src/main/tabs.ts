// Connecting a tab to the engine. One engine per origin and database name:
// the tab holding the Web Lock `ibex:<name>` leads — its worker owns the
// OPFS files and the server connection. Other tabs follow: they talk to
// the leader's worker over the BroadcastChannel `ibex:<name>` and keep
// their own in-memory mirror. When the leader goes away, the lock passes
// to a follower, which starts a worker; every tab then re-sends what the
// old engine had not made durable (re-applying a batch is a no-op).
// Followers never touch OPFS, so no tab meets NoModificationAllowedError.

import type { BootMessage, EngineChannel, Envelope, FromEngine, ToEngine } from "../wire/protocol.js";

function transferables(m: ToEngine): Transferable[] {
  return m.t === "mutate" ? [m.batch.buffer as ArrayBuffer] : [];
}

export function workerChannel(name: string, storage: BootMessage["storage"], server?: string): EngineChannel {
  // A server given as a page-relative URL ("/") becomes ws(s)://host/sync.
  const url = server === undefined ? undefined : new URL(server.endsWith("/sync") ? server : `${server.replace(/\/$/, "")}/sync`, location.href);
  if (url) url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;

  const tab = `tab-${crypto.getRandomValues(new Uint32Array(2)).join("-")}`;
  const bc = new BroadcastChannel(`ibex:${name}`);
  let handler: (m: FromEngine) => void = () => {};
  let worker: Worker | null = null;
  let following = false;
  let closed = false;
  let releaseLock: () => void = () => {};
  /** Messages posted before this tab knows where the engine is. */
  const queue: ToEngine[] = [];

  const toLeader = (m: ToEngine) => bc.postMessage({ to: "leader", from: tab, msg: m } satisfies Envelope);

  bc.onmessage = (e: MessageEvent<Envelope>) => {
    const d = e.data;
    if (worker || "hello" in d || "from" in d || (d.to !== tab && !(d.to === "*" && d.except !== tab))) return;
    const msg = d.msg;
    if (msg.t === "leader") {
      // A leader answered our hello, or a new leader took over.
      following = true;
      for (const m of queue.splice(0)) toLeader(m);
      handler({ t: "leader", leader: false });
      return;
    }
    handler(msg);
  };

  const lead = () => {
    const w = new Worker(new URL("../engine/worker.js", import.meta.url), { type: "module", name: `ibex:${name}` });
    worker = w;
    w.onmessage = (e: MessageEvent<FromEngine>) => handler(e.data);
    w.onerror = (e) => handler({ t: "error", code: "ERR_WORKER", message: `Engine worker error: ${e.message}` });
    w.postMessage({ t: "boot", name, storage, ...(url ? { server: url.toString() } : {}) } satisfies BootMessage);
    for (const m of queue.splice(0)) w.postMessage(m, transferables(m));
    handler({ t: "leader", leader: true });
  };

  if (typeof navigator !== "undefined" && navigator.locks) {
    void navigator.locks.request(`ibex:${name}`, () => {
      if (closed) return undefined;
      lead();
      // Held until this tab closes the database or goes away.
      return new Promise<void>((resolve) => (releaseLock = resolve));
    });
    // Ask for a leader until one answers or this tab becomes it.
    const hello = () => !worker && !following && !closed && bc.postMessage({ hello: tab } satisfies Envelope);
    hello();
    const timer = setInterval(() => (worker || following || closed ? clearInterval(timer) : hello()), 100);
  } else {
    lead();
  }

  // Network emulation and some platforms only tell the page.
  addEventListener("offline", () => worker?.postMessage({ t: "network", online: false } satisfies ToEngine));
  addEventListener("online", () => worker?.postMessage({ t: "network", online: true } satisfies ToEngine));

  return {
    post: (m: ToEngine) => {
      if (worker) worker.postMessage(m, transferables(m));
      else if (following) toLeader(m);
      else queue.push(m);
    },
    onMessage: (h) => {
      handler = h;
    },
    terminate: () => {
      closed = true;
      worker?.terminate();
      bc.close();
      releaseLock();
    },
  };
}
