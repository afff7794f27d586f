// @ibexdb/db in real Chromium: the WASM engine in a worker, OPFS storage,
// the IndexedDB fallback, persistence across reloads.

import { type Page, expect, test } from "@playwright/test";

declare global {
  interface Window {
    ibex: typeof import("../../packages/db/dist/index.js");
    ibexReady: boolean;
  }
}

async function load(page: Page, errors: string[]) {
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto("/playwright/pages/sdk.html");
  await page.waitForFunction(() => window.ibexReady === true);
}

test("1,000 items are created, flushed, and read back from OPFS after a reload", async ({ page }) => {
  const errors: string[] = [];
  await load(page, errors);
  const before = await page.evaluate(async () => {
    const { IbexDB, defineSchema } = window.ibex;
    const T = defineSchema({ ns: "thing", version: 1, fields: { title: { type: "string", required: true }, n: { type: "number" } } });
    const db = await IbexDB.open({ name: "e2e-opfs", schemas: [T] });
    for (let i = 0; i < 1000; i++) db.create("/data/things", T, { title: `item ${i}`, n: i }, { key: `k${i}` });
    await db.flush();
    return { storage: db.status.storage, engine: db.status.engine, count: db.keys("/data/things").length };
  });
  // The worker really runs the WASM engine on OPFS: the version comes from the module.
  expect(before).toEqual({ storage: "opfs", engine: "0.1.0", count: 1000 });

  await page.reload();
  await page.waitForFunction(() => window.ibexReady === true);
  const after = await page.evaluate(async () => {
    const { IbexDB, defineSchema } = window.ibex;
    const T = defineSchema({ ns: "thing", version: 1, fields: { title: { type: "string", required: true }, n: { type: "number" } } });
    const db = await IbexDB.open({ name: "e2e-opfs", schemas: [T], repos: ["/data/things"] });
    const keys = db.keys("/data/things");
    let sum = 0;
    for (const k of keys) sum += db.item<typeof T.fields>(`/data/things/${k}`)!.get("n") ?? 0;
    const q = db.query({ source: "/data/things", schema: T, where: (t) => t.get("n")! >= 990, sortBy: "n" });
    return { storage: db.status.storage, count: keys.length, sum, last: q.results.map((i) => i.get("title")), commits: db.status.repos["/data/things"]!.report!.commits };
  });
  expect(after.storage).toBe("opfs");
  expect(after.count).toBe(1000);
  expect(after.sum).toBe((999 * 1000) / 2);
  expect(after.commits).toBe(1000);
  expect(after.last).toEqual(Array.from({ length: 10 }, (_, i) => `item ${990 + i}`));
  expect(errors).toEqual([]);
});

test("the IndexedDB fallback opens and persists", async ({ page }) => {
  const errors: string[] = [];
  await load(page, errors);
  const first = await page.evaluate(async () => {
    const { IbexDB, defineSchema } = window.ibex;
    const T = defineSchema({ ns: "note", version: 1, fields: { text: { type: "string", required: true } } });
    const db = await IbexDB.open({ name: "e2e-idb", schemas: [T], storage: "indexeddb" });
    for (let i = 0; i < 100; i++) db.create("/data/notes", T, { text: `note ${i}` }, { key: `n${i}` });
    db.item<typeof T.fields>("/data/notes/n7")!.set("text", "edited");
    await db.flush();
    return db.status.storage;
  });
  expect(first).toBe("indexeddb");
  await page.reload();
  await page.waitForFunction(() => window.ibexReady === true);
  const after = await page.evaluate(async () => {
    const { IbexDB, defineSchema } = window.ibex;
    const T = defineSchema({ ns: "note", version: 1, fields: { text: { type: "string", required: true } } });
    const db = await IbexDB.open({ name: "e2e-idb", schemas: [T], storage: "indexeddb", repos: ["/data/notes"] });
    return { storage: db.status.storage, count: db.keys("/data/notes").length, n7: db.item<typeof T.fields>("/data/notes/n7")!.get("text") };
  });
  expect(after).toEqual({ storage: "indexeddb", count: 100, n7: "edited" });
  expect(errors).toEqual([]);
});

test("the page compiles the WASM module once: every database's worker gets it compiled", async ({ page }) => {
  const errors: string[] = [];
  const wasm: string[] = [];
  page.on("request", (r) => r.url().endsWith(".wasm") && wasm.push(r.url()));
  await load(page, errors);
  const read = await page.evaluate(async () => {
    const { IbexDB, defineSchema } = window.ibex;
    const T = defineSchema({ ns: "thing", version: 1, fields: { title: { type: "string", required: true } } });
    const a = await IbexDB.open({ name: "e2e-module-a", schemas: [T] });
    a.create("/data/m", T, { title: "in a" }, { key: "x" });
    await a.flush();
    await a.close();
    // A second database, and the first one again: new workers, same module.
    const b = await IbexDB.open({ name: "e2e-module-b", schemas: [T] });
    const again = await IbexDB.open({ name: "e2e-module-a", schemas: [T], repos: ["/data/m"] });
    const title = again.item<typeof T.fields>("/data/m/x")!.get("title");
    await b.close();
    await again.close();
    return title;
  });
  expect(read).toBe("in a");
  expect(wasm.length).toBe(1);
  expect(errors).toEqual([]);
});

test("a worker that does not load rejects open with ERR_WORKER naming its URL and the fix", async ({ page }) => {
  await page.route("**/packages/db/dist/engine/worker.js", (r) => r.fulfill({ status: 404, body: "not here" }));
  await load(page, []);
  const failure = await page.evaluate(async () => {
    const { IbexDB } = window.ibex;
    try {
      await IbexDB.open({ name: "e2e-no-worker", schemas: [] });
      return null;
    } catch (e) {
      const err = e as { code?: string; message?: string };
      return { code: err.code, message: err.message };
    }
  });
  expect(failure?.code).toBe("ERR_WORKER");
  expect(failure?.message).toContain("/packages/db/dist/engine/worker.js");
  expect(failure?.message).toContain("did not load");
});
