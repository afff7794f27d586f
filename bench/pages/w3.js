// W3 cold start (and W8 memory): a page load with N items already
// persisted. `?setup=<impl>&n=N` writes them; `?impl=<impl>&n=N` is the
// measured load: times count from navigation start (performance.now() is
// relative to it), so they include loading the code and the WASM module,
// as a user's reload does. Results land in `window.w3`.
//
// first = 50 rows of a query are available; all = every item is in memory
// (Ibex mirror, TinyBase store, or Dexie rows read into an array);
// longest = the longest main-thread task (Long Tasks API: only tasks over
// 50 ms are reported, so 0 means none was that long).

import { ibexSchema, row } from "./data.js";

const scriptStart = performance.now();
const params = new URLSearchParams(location.search);
const n = Number(params.get("n"));
const longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) longTasks.push(e.duration);
}).observe({ type: "longtask", buffered: true });

const name = (impl) => `w3-${impl}-${n}`;

async function tinybaseOpen() {
  const { createStore } = await import("/bench/node_modules/tinybase/index.js");
  const { createOpfsPersister } = await import("/bench/node_modules/tinybase/persisters/persister-browser/index.js");
  const dir = await navigator.storage.getDirectory();
  const store = createStore();
  return { store, persister: createOpfsPersister(store, await dir.getFileHandle(`${name("tinybase")}.json`, { create: true })) };
}

async function dexieOpen() {
  const { default: Dexie } = await import("/bench/node_modules/dexie/dist/dexie.mjs");
  const d = new Dexie(name("dexie"));
  d.version(1).stores({ items: "id" });
  await d.open();
  return d;
}

const SETUP = {
  async ibex() {
    const { IbexDB, S } = await ibexSchema();
    const db = await IbexDB.open({ name: name("ibex"), schemas: [S] });
    for (let i = 0; i < n; i++) {
      const r = row(i);
      db.create("/data/w3", S, { title: r.title, count: r.count, tags: new Set(r.tags) }, { key: `k${i}` });
      // Flush in chunks so the writes in flight stay bounded.
      if (i % 50_000 === 49_999) await db.flush();
    }
    await db.flush();
    await db.close();
  },
  async tinybase() {
    const { store, persister } = await tinybaseOpen();
    store.transaction(() => {
      for (let i = 0; i < n; i++) {
        store.setRow("items", `k${i}`, row(i));
      }
    });
    await persister.save();
  },
  async dexie() {
    const d = await dexieOpen();
    for (let i = 0; i < n; i += 10_000) await d.items.bulkAdd(Array.from({ length: Math.min(10_000, n - i) }, (_, j) => ({ id: `k${i + j}`, ...row(i + j) })));
    d.close();
  },
};

const LOAD = {
  async ibex() {
    // Where the time goes: the page's script starts, the SDK's code is
    // loaded, the worker has compiled the module and opened the engine.
    const phases = { script: scriptStart };
    const { IbexDB, S } = await ibexSchema();
    phases.code = performance.now();
    const db = await IbexDB.open({ name: name("ibex"), schemas: [S] });
    phases.ready = performance.now();
    const q = db.query({ source: "/data/w3", schema: S, limit: 50 });
    let first = null;
    const seen = () => {
      if (first === null && q.results.length >= 50) first = performance.now();
    };
    const off = q.subscribe(seen);
    await db.open("/data/w3");
    seen();
    const all = performance.now();
    off();
    return { first, all, phases, count: db.count("/data/w3"), stats: await db.stats(), keep: db };
  },
  async tinybase() {
    const { store, persister } = await tinybaseOpen();
    await persister.load();
    const ids = store.getRowIds("items").slice(0, 50).map((id) => store.getRow("items", id));
    const first = performance.now();
    if (ids.length < Math.min(50, n)) throw new Error("TinyBase loaded too few rows");
    return { first, all: first, count: store.getRowCount("items"), keep: store };
  },
  async dexie() {
    const d = await dexieOpen();
    const head = await d.items.limit(50).toArray();
    const first = performance.now();
    const rows = await d.items.toArray();
    const all = performance.now();
    if (head.length < Math.min(50, n)) throw new Error("Dexie returned too few rows");
    return { first, all, count: rows.length, keep: rows };
  },
  async none() {
    return { first: 0, all: 0, count: 0 };
  },
};

(async () => {
  try {
    if (params.get("setup")) {
      const t0 = performance.now();
      await SETUP[params.get("setup")]();
      window.w3 = { setupMs: performance.now() - t0 };
      return;
    }
    const r = await LOAD[params.get("impl")]();
    // Held so the memory measured afterwards (W8) includes the loaded data.
    window.w3Keep = r.keep;
    // Let the Long Tasks observer deliver the last entries.
    await new Promise((res) => setTimeout(res, 50));
    window.w3 = { first: r.first, all: r.all, phases: r.phases, count: r.count, longest: Math.max(0, ...longTasks), longTasks: longTasks.length, engineMemoryBytes: r.stats?.engineMemoryBytes ?? 0 };
  } catch (e) {
    window.w3 = { error: String(e?.stack ?? e) };
  }
})();
