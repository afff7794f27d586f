// W1 — GoatDB's 13 operations (BENCHMARKS.md), same schema
// (title: string, count: number, tags: set), for Ibex and its peers.
// Each implementation exposes setup() and one function per operation that
// runs one sample and returns milliseconds. Durable = after the storage
// flush (Ibex `flush()`, TinyBase OPFS persister `save()`, Dexie's
// committed transaction). Operations far below the browser's timer
// resolution repeat `reps` times inside one sample and report the mean.

import { ibexSchema, row } from "./data.js";

const OPS = ["createInstance", "openEmpty", "openBig", "createItem", "readById", "update", "bulkCreate100", "bulkRead100", "readAll", "simpleQuery", "complexQuery", "count", "keys"];

async function timed(fn, reps = 1) {
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await fn(r);
  return (performance.now() - t0) / reps;
}

function timedSync(fn, reps = 1) {
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) fn(r);
  return (performance.now() - t0) / reps;
}

// ---------------------------------------------------------------- Ibex ----
async function ibex(big) {
  const { IbexDB, S } = await ibexSchema();
  const open = (name) => IbexDB.open({ name, schemas: [S] });
  const make = (i) => ({ title: row(i).title, count: row(i).count, tags: new Set(row(i).tags) });
  // The big repository is written once, flushed, and the instance closed.
  const setupDb = await open("w1-setup");
  for (let i = 0; i < big; i++) setupDb.create("/data/big", S, make(i), { key: `k${i}` });
  await setupDb.flush();
  await setupDb.close();
  const db = await open("w1");
  for (let i = 0; i < 100; i++) db.create("/data/small", S, make(i), { key: `s${i}` });
  await db.flush();
  // One engine per database at a time (the multi-tab issue lifts this for
  // tabs): samples on the big repository open and close their own instance.
  let n = 0;
  return {
    createInstance: async () => {
      const name = `w1-ci-${n++}`;
      let d;
      const ms = await timed(async () => (d = await open(name)));
      await d.close();
      return ms;
    },
    openEmpty: () => timed(() => db.open(`/data/empty${n++}`)),
    openBig: async () => {
      const d = await open("w1-setup");
      const ms = await timed(() => d.open("/data/big"));
      await d.close();
      return ms;
    },
    createItem: () => timed(async () => {
      db.create("/data/small", S, make(n++));
      await db.flush();
    }),
    readById: () => timedSync((r) => db.item(`/data/small/s${r % 100}`).get("title"), 100_000),
    update: () => timed(async () => {
      const it = db.item(`/data/small/s${n % 100}`);
      it.set("title", `Updated ${n}`);
      it.set("count", n % 100);
      it.set("tags", new Set(["z", String(n++)]));
      await db.flush();
    }),
    bulkCreate100: () => timed(async () => {
      for (let i = 0; i < 100; i++) db.create("/data/bulk", S, make(i));
      await db.flush();
    }),
    bulkRead100: () => timedSync(() => {
      for (let i = 0; i < 100; i++) {
        const it = db.item(`/data/small/s${i}`);
        it.get("title");
        it.get("count");
        it.get("tags");
      }
    }, 10),
    readAll: async () => {
      const bigDb = await open("w1-setup");
      await bigDb.open("/data/big");
      const ms = timedSync(() => {
        let sum = 0;
        for (const k of bigDb.keys("/data/big")) {
          const it = bigDb.item(`/data/big/${k}`);
          sum += it.get("count") + it.get("title").length + it.get("tags").size;
        }
        return sum;
      });
      await bigDb.close();
      return ms;
    },
    simpleQuery: () => timedSync(() => {
      const q = db.query({ source: "/data/small", schema: S, where: (t) => t.get("count") > 50 });
      q.results;
      q.close();
    }, 10),
    complexQuery: () => timedSync(() => {
      const q = db.query({ source: "/data/small", schema: S, where: (t) => t.get("count") > 30 && t.get("count") < 70 && t.get("tags").has("x"), sortBy: "title" });
      q.results;
      q.close();
    }, 10),
    count: () => timedSync(() => db.count("/data/small"), 100_000),
    keys: () => timedSync(() => db.keys("/data/small"), 10_000),
    close: () => db.close(),
  };
}

// ------------------------------------------------------------ TinyBase ----
// Used the way its documentation shows: rows with an array cell for `tags`
// (data.js), reads through the Store API, queries through its queries
// module. Like Ibex's `db.query` (a live query), a TinyBase query
// definition is kept up to date as the store changes; each query sample
// defines one, reads its result row ids (sorted by title for the complex
// query) and deletes it, as the Ibex sample opens, reads and closes one.
async function tinybase(big) {
  const { createStore } = await import("/bench/node_modules/tinybase/index.js");
  const { createQueries } = await import("/bench/node_modules/tinybase/queries/index.js");
  const { createOpfsPersister } = await import("/bench/node_modules/tinybase/persisters/persister-browser/index.js");
  const dir = await navigator.storage.getDirectory();
  const file = (name) => dir.getFileHandle(`${name}.json`, { create: true });
  const open = async (name) => {
    const store = createStore();
    const persister = createOpfsPersister(store, await file(name));
    return { store, persister };
  };
  const setup = await open("big");
  setup.store.transaction(() => {
    for (let i = 0; i < big; i++) setup.store.setRow("items", `k${i}`, row(i));
  });
  await setup.persister.save();
  const small = await open("small");
  small.store.transaction(() => {
    for (let i = 0; i < 100; i++) small.store.setRow("items", `s${i}`, row(i));
  });
  await small.persister.save();
  const bulk = await open("bulk");
  const bigLoaded = await open("big");
  await bigLoaded.persister.load();
  const { store, persister } = small;
  const queries = createQueries(store);
  const query = (id, where, sortBy) => {
    queries.setQueryDefinition(id, "items", ({ selectAll, where: w }) => {
      selectAll();
      w(where);
    });
    const ids = sortBy ? queries.getResultSortedRowIds(id, sortBy) : queries.getResultRowIds(id);
    queries.delQueryDefinition(id);
    return ids;
  };
  const simple = () => query("simple", (get) => get("count") > 50);
  const complex = () => query("complex", (get) => get("count") > 30 && get("count") < 70 && get("tags").includes("x"), "title");
  // Once, untimed: the queries find what the same filters over the rows do
  // (a typo in a cell id would otherwise time an empty result).
  const rows = Array.from({ length: 100 }, (_, i) => row(i));
  if (simple().length !== rows.filter((r) => r.count > 50).length || complex().length !== rows.filter((r) => r.count > 30 && r.count < 70 && r.tags.includes("x")).length) {
    throw new Error("TinyBase queries returned other rows than expected");
  }
  let n = 0;
  return {
    createInstance: () => timed(() => open(`ci${n++}`)),
    openEmpty: async () => {
      const s = await open(`empty${n++}`);
      return timed(() => s.persister.load());
    },
    openBig: async () => {
      const s = await open("big");
      return timed(() => s.persister.load());
    },
    createItem: () => timed(async () => {
      store.setRow("items", `n${n}`, row(n++));
      await persister.save();
    }),
    readById: () => timedSync((r) => store.getCell("items", `s${r % 100}`, "title"), 100_000),
    update: () => timed(async () => {
      const id = `s${n % 100}`;
      store.transaction(() => {
        store.setCell("items", id, "title", `Updated ${n}`);
        store.setCell("items", id, "count", n % 100);
        store.setCell("items", id, "tags", ["z", String(n++)]);
      });
      await persister.save();
    }),
    bulkCreate100: () => timed(async () => {
      bulk.store.transaction(() => {
        for (let i = 0; i < 100; i++) bulk.store.setRow("items", `b${n++}`, row(i));
      });
      await bulk.persister.save();
    }),
    bulkRead100: () => timedSync(() => {
      for (let i = 0; i < 100; i++) {
        const id = `s${i}`;
        store.getCell("items", id, "title");
        store.getCell("items", id, "count");
        store.getCell("items", id, "tags");
      }
    }, 10),
    readAll: () => timedSync(() => {
      let sum = 0;
      const s = bigLoaded.store;
      s.forEachRow("items", (id) => {
        sum += s.getCell("items", id, "count") + s.getCell("items", id, "title").length + s.getCell("items", id, "tags").length;
      });
      return sum;
    }),
    simpleQuery: () => timedSync(simple, 10),
    complexQuery: () => timedSync(complex, 10),
    count: () => timedSync(() => store.getRowCount("items"), 100_000),
    keys: () => timedSync(() => store.getRowIds("items"), 10_000),
    close: async () => {},
  };
}

// --------------------------------------------------------------- Dexie ----
async function dexie(big) {
  const { default: Dexie } = await import("/bench/node_modules/dexie/dist/dexie.mjs");
  const open = async (name) => {
    const d = new Dexie(name);
    d.version(1).stores({ items: "id" });
    await d.open();
    return d;
  };
  const rec = (id, i) => ({ id, ...row(i) });
  const bigDb = await open("big");
  for (let i = 0; i < big; i += 10_000) await bigDb.items.bulkAdd(Array.from({ length: Math.min(10_000, big - i) }, (_, j) => rec(`k${i + j}`, i + j)));
  const db = await open("small");
  await db.items.bulkAdd(Array.from({ length: 100 }, (_, i) => rec(`s${i}`, i)));
  let n = 0;
  return {
    createInstance: async () => {
      let d;
      const ms = await timed(async () => (d = await open(`ci${n++}`)));
      d.close();
      return ms;
    },
    openEmpty: async () => {
      let d;
      const ms = await timed(async () => {
        d = await open(`empty${n++}`);
        await d.items.count();
      });
      d.close();
      return ms;
    },
    openBig: async () => {
      let d;
      // Dexie keeps data in IndexedDB; "open" is ready to query, not loaded.
      const ms = await timed(async () => {
        d = await open("big");
        await d.items.count();
      });
      d.close();
      return ms;
    },
    createItem: () => timed(() => db.items.add(rec(`n${n}`, n++))),
    readById: () => timed((r) => db.items.get(`s${r % 100}`), 50),
    update: () => timed(() => db.items.update(`s${n % 100}`, { title: `Updated ${n}`, count: n % 100, tags: ["z", String(n++)] })),
    bulkCreate100: () => timed(() => db.items.bulkAdd(Array.from({ length: 100 }, (_, i) => rec(`b${n++}`, i)))),
    bulkRead100: () => timed(() => db.items.bulkGet(Array.from({ length: 100 }, (_, i) => `s${i}`))),
    readAll: () => timed(() => bigDb.items.toArray()),
    simpleQuery: () => timed(() => db.items.filter((r) => r.count > 50).toArray()),
    complexQuery: () => timed(() => db.items.filter((r) => r.count > 30 && r.count < 70 && r.tags.includes("x")).sortBy("title")),
    count: () => timed(() => db.items.count(), 20),
    keys: () => timed(() => db.items.toCollection().primaryKeys(), 20),
    close: async () => {
      db.close();
      bigDb.close();
    },
  };
}

const IMPLS = { ibex, tinybase, dexie };

/** Runs W1 for one implementation; returns { op: [ms, ...] }. */
window.runW1 = async (impl, { big, runs, bigRuns }) => {
  const t = await IMPLS[impl](big);
  const out = {};
  for (const op of OPS) {
    const k = op === "openBig" || op === "readAll" || op === "createInstance" ? bigRuns : runs;
    out[op] = [];
    for (let i = 0; i < k; i++) out[op].push(await t[op]());
  }
  await t.close();
  return out;
};

/** W2: 100 live queries over `big` items; a write dirties exactly 5 of
 * them (query j holds count in [j, j+5); the written item moves from a
 * count in 4..99 to one outside every window). Latency = from the write to
 * the last affected subscriber being called. */
window.runW2 = async ({ big, writes }) => {
  const { IbexDB, S } = await ibexSchema();
  const db = await IbexDB.open({ name: "w2", schemas: [S] });
  for (let i = 0; i < big; i++) db.create("/data/w2", S, { title: `Item ${i}`, count: i % 100 }, { key: `k${i}` });
  await db.flush();
  const queries = Array.from({ length: 100 }, (_, j) => db.query({ source: "/data/w2", schema: S, where: (t) => t.get("count") >= j && t.get("count") < j + 5 }));
  const lat = [];
  let affected = 0;
  for (let w = 0; w < writes; w++) {
    let i = (w * 7919) % big;
    while (i % 100 < 4) i = (i + 1) % big;
    const it = db.item(`/data/w2/k${i}`);
    const c = it.get("count");
    const hit = queries.filter((q) => q.has(it));
    let pending = hit.length;
    affected += pending;
    let resolve;
    const done = new Promise((r) => (resolve = r));
    const offs = hit.map((q) => q.subscribe(() => --pending === 0 && resolve()));
    const t0 = performance.now();
    it.set("count", 1000 + c);
    await done;
    lat.push(performance.now() - t0);
    offs.forEach((off) => off());
    it.set("count", c);
    await new Promise((r) => setTimeout(r, 0));
  }
  queries.forEach((q) => q.close());
  await db.close();
  return { lat, affectedPerWrite: affected / writes };
};

window.benchReady = true;
