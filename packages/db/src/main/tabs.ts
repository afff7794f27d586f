// Connecting a tab to the engine. One engine per origin and database name:
// the tab holding the Web Lock `ibex:<name>` leads — its worker owns the
// OPFS files and the server connection. Other tabs follow: they talk to
// the leader's worker over the BroadcastChannel `ibex:<name>` and keep
// their own in-memory mirror. When the leader goes away, the lock passes
// to a follower, which starts a worker; every tab then re-sends what the
// old engine had not made durable (re-applying a batch is a no-op).
// Followers never touch OPFS, so no tab meets NoModificationAllowedError.

import type { BootMessage, EngineChannel, Envelope, FromEngine, ModuleMessage, ToEngine } from "../wire/protocol.js";

function transferables(m: ToEngine): Transferable[] {
  return m.t === "mutate" ? [m.batch.buffer as ArrayBuffer] : [];
}

/** The engine's WebAssembly module, compiled once per page: a second
 * database, or the worker a tab starts when it takes over as leader, gets
 * it compiled (Modules are structured-cloneable) and only instantiates it. */
let compiled: Promise<WebAssembly.Module | null> | null = null;

export function engineModule(): Promise<WebAssembly.Module | null> {
  compiled ??= compileEngine().then(
    (m) => m,
    () => {
      // The worker compiles it itself (and reports why if it cannot); a
      // later database tries again.
      compiled = null;
      return null;
    },
  );
  return compiled;
}

/** Where the package's own files are served when a dev server moved this
 * module away from them. Vite's dependency optimizer (Vite 7 and older)
 * copies it into `node_modules/.vite/deps/` and leaves the worker and the
 * WASM module behind, so URLs relative to `import.meta.url` point at files
 * that do not exist there (vitejs/vite#8427, #21056). The dev server still
 * serves the package where it is installed, under the same base. */
function movedPackageBase(): URL | null {
  const here = import.meta.url;
  const at = here.indexOf("/node_modules/.vite/");
  return at < 0 ? null : new URL(`${here.slice(0, at)}/node_modules/@ibexdb/db/`);
}

async function compileEngine(): Promise<WebAssembly.Module> {
  const moved = movedPackageBase();
  const url = moved ? new URL("wasm/ibex_wasm_bg.wasm", moved) : new URL("../../wasm/ibex_wasm_bg.wasm", import.meta.url);
  try {
    // Compiles while the bytes download.
    return await WebAssembly.compileStreaming(fetch(url));
  } catch {
    // Served without `application/wasm`, which compileStreaming requires.
    return await WebAssembly.compile(await (await fetch(url)).arrayBuffer());
  }
}

/** The engine's worker (written out as one expression: bundlers such as
 * Vite find and bundle the worker by this exact shape). */
function startWorker(name: string): Worker {
  const moved = movedWorkerUrl();
  if (moved) return new Worker(moved, { type: "module", name: `ibex:${name}` });
  return new Worker(new URL("../engine/worker.js", import.meta.url), { type: "module", name: `ibex:${name}` });
}

/** The worker where the package is installed, when a dev server moved this module. */
function movedWorkerUrl(): URL | null {
  const moved = movedPackageBase();
  return moved && new URL("dist/engine/worker.js", moved);
}

/** Why the worker failed, with where it was loaded from and the likely fix:
 * a script that does not load fires a bare `error` event (no message). */
function workerFailure(e: Event | ErrorEvent): string {
  const moved = movedWorkerUrl();
  const at = (moved ?? new URL("../engine/worker.js", import.meta.url)).href;
  const why = "message" in e && e.message ? e.message : "it did not load (not found, not served as JavaScript, or not a module)";
  const hint = moved
    ? ' A dev server pre-bundled @ibexdb/db and does not serve the package at node_modules/@ibexdb/db/: add optimizeDeps: { exclude: ["@ibexdb/db"] } to vite.config.'
    : " Serve @ibexdb/db's dist/ and wasm/ folders as they are published (the worker and the WASM module are loaded relative to dist/main/tabs.js).";
  return `The engine worker from ${at} failed: ${why}.${hint}`;
}

export function workerChannel(name: string, storage: BootMessage["storage"], server?: string): EngineChannel {
  // A server given as a page-relative URL ("/") becomes ws(s)://host/sync.
  const url = server === undefined ? undefined : new URL(server.endsWith("/sync") ? server : `${server.replace(/\/$/, "")}/sync`, location.href);
  if (url) url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;

  // Started before anything else, before this tab knows whether it will
  // lead: fetching the worker's code, compiling the module here and
  // instantiating it there overlap with the lock request. A tab that turns
  // out to follow stops it.
  const module = engineModule();
  let spare: Worker | null = startWorker(name);
  const withModule = (w: Worker) =>
    module.then((m) => {
      if (m) w.postMessage({ t: "module", module: m } satisfies ModuleMessage);
    });
  const spareReady = withModule(spare);
  // Kept until this tab leads (a follower never needed the worker).
  let spareError: string | null = null;
  spare.onerror = (e) => (spareError = workerFailure(e));

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
      spare?.terminate();
      spare = null;
      spareError = null;
      for (const m of queue.splice(0)) toLeader(m);
      handler({ t: "leader", leader: false });
      return;
    }
    handler(msg);
  };

  const lead = () => {
    const w = spare ?? startWorker(name);
    const ready = spare ? spareReady : withModule(w);
    spare = null;
    worker = w;
    w.onmessage = (e: MessageEvent<FromEngine>) => handler(e.data);
    w.onerror = (e) => handler({ t: "error", code: "ERR_WORKER", message: workerFailure(e) });
    if (spareError !== null) {
      handler({ t: "error", code: "ERR_WORKER", message: spareError });
      spareError = null;
    }
    // After the module (when it compiled), so the worker does not compile
    // it again; messages posted meanwhile wait in the worker for the boot.
    void ready.then(() => w.postMessage({ t: "boot", name, storage, ...(url ? { server: url.toString() } : {}) } satisfies BootMessage));
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
      spare?.terminate();
      spare = null;
      worker?.terminate();
      bc.close();
      releaseLock();
    },
  };
}
