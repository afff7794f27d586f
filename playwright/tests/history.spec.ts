// History as a feature in the demo, in real Chromium through ibex-server:
// restore a version from the history panel, play the list back, see a
// conflict badge after two offline browsers set the same title, and revert
// another session's changes from the admin view (then undo the revert).

import { type Browser, type Page, expect, test } from "@playwright/test";

const DEMO = `http://127.0.0.1:${process.env.IBEX_DEMO_PORT}/`;

async function open(browser: Browser, list: string) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${DEMO}?list=${list}`);
  await expect(page.getByPlaceholder("What needs to be done?")).toBeVisible();
  await expect(page.getByTestId("online")).toHaveText("Online · synced", { timeout: 10_000 });
  return { ctx, page, errors };
}

async function add(page: Page, ...titles: string[]) {
  for (const t of titles) {
    await page.getByPlaceholder("What needs to be done?").fill(t);
    await page.getByPlaceholder("What needs to be done?").press("Enter");
  }
}

async function rename(page: Page, from: string, to: string) {
  await item(page, from).getByTestId("todo-title").dblclick();
  await item(page, from).locator(".edit").fill(to);
  await item(page, from).locator(".edit").press("Enter");
}

const titles = (p: Page) => p.getByTestId("todo-title");
const item = (p: Page, title: string) => p.getByTestId("todo-item").filter({ has: p.getByTestId("todo-title").getByText(title, { exact: true }) });

test("the history panel shows before → after and restores an old version", async ({ browser }) => {
  const a = await open(browser, `restore${Date.now()}`);
  await add(a.page, "milk");
  await rename(a.page, "milk", "oat milk");
  await item(a.page, "oat milk").locator(".toggle").check();
  await item(a.page, "oat milk").hover();
  await item(a.page, "oat milk").getByRole("button", { name: "Show history" }).click();
  const entries = item(a.page, "oat milk").getByTestId("history-entry");
  await expect(entries).toHaveCount(3);
  await expect(entries.nth(0)).toContainText("completed: false → true");
  await expect(entries.nth(1)).toContainText("title: “milk” → “oat milk”");
  // Restore the version right after its creation: a new commit, on top.
  await entries.nth(2).getByTestId("restore-version").click();
  await expect(titles(a.page)).toHaveText(["milk"]);
  await expect(a.page.getByTestId("todo-item").first()).not.toHaveClass(/completed/);
  const after = a.page.getByTestId("todo-item").first().getByTestId("history-entry");
  await expect(after).toHaveCount(4);
  await expect(after.nth(0)).toContainText("title: “oat milk” → “milk”");
  expect(a.errors).toEqual([]);
});

test("the timeline plays the list back step by step", async ({ browser }) => {
  const a = await open(browser, `playback${Date.now()}`);
  await add(a.page, "one", "two", "three");
  await item(a.page, "two").locator(".toggle").check();
  await item(a.page, "three").hover();
  await item(a.page, "three").locator(".destroy").click();
  await expect(titles(a.page)).toHaveText(["one", "two"]);
  await a.page.getByTestId("timeline-toggle").click();
  const pos = a.page.getByTestId("timeline-position");
  await expect(pos).toHaveText("0 / 5");
  const rows = a.page.getByTestId("timeline-item");
  await expect(rows).toHaveCount(0);
  const forward = a.page.getByRole("button", { name: "Step forward" });
  await forward.click();
  await expect(rows).toHaveText(["one"]);
  await forward.click();
  await forward.click();
  await expect(rows).toHaveText(["one", "two", "three"]);
  await forward.click();
  await expect(rows.nth(1)).toHaveClass(/completed/);
  await forward.click();
  await expect(pos).toHaveText("5 / 5");
  await expect(rows).toHaveText(["one", "two"]);
  // Back through the slider.
  await a.page.getByTestId("timeline-slider").fill("2");
  await expect(pos).toHaveText("2 / 5");
  await expect(rows).toHaveText(["one", "two"]);
  await expect(rows.nth(1)).not.toHaveClass(/completed/);
  // Playing runs to the end by itself.
  await a.page.getByRole("button", { name: "Play", exact: true }).click();
  await expect(pos).toHaveText("5 / 5", { timeout: 10_000 });
  // The live list was never touched.
  await expect(titles(a.page)).toHaveText(["one", "two"]);
  expect(a.errors).toEqual([]);
});

test("two offline browsers set the same title: a conflict badge shows the value that lost", async ({ browser }) => {
  const list = `conflict${Date.now()}`;
  const a = await open(browser, list);
  await add(a.page, "shared");
  const b = await open(browser, list);
  await expect(titles(b.page)).toHaveText(["shared"], { timeout: 5_000 });
  await a.ctx.setOffline(true);
  await b.ctx.setOffline(true);
  await expect(a.page.getByTestId("online")).toContainText("Offline", { timeout: 5_000 });
  await expect(b.page.getByTestId("online")).toContainText("Offline", { timeout: 5_000 });
  await rename(a.page, "shared", "from a");
  await b.page.waitForTimeout(20);
  await rename(b.page, "shared", "from b");
  await a.ctx.setOffline(false);
  await b.ctx.setOffline(false);
  for (const p of [a.page, b.page]) {
    await expect(p.getByTestId("online")).toHaveText("Online · synced", { timeout: 20_000 });
    // The later write wins everywhere; the badge shows the one that lost.
    await expect(titles(p)).toHaveText(["from b"], { timeout: 10_000 });
    await expect(p.getByTestId("conflict-badge")).toHaveText("also “from a”", { timeout: 10_000 });
  }
  // Writing the title again settles it, on both sides.
  await rename(a.page, "from b", "agreed");
  for (const p of [a.page, b.page]) {
    await expect(titles(p)).toHaveText(["agreed"], { timeout: 10_000 });
    await expect(p.getByTestId("conflict-badge")).toHaveCount(0);
  }
  expect([...a.errors, ...b.errors]).toEqual([]);
});

test("the admin view reverts another session's changes, keeping later edits, and undoes the revert", async ({ browser }) => {
  const list = `revert${Date.now()}`;
  const a = await open(browser, list);
  await add(a.page, "buy milk", "call mom");
  const b = await open(browser, list);
  await expect(titles(b.page)).toHaveText(["buy milk", "call mom"], { timeout: 5_000 });
  // b vandalizes: renames one todo, completes the other, adds spam.
  await rename(b.page, "buy milk", "SPAM SPAM");
  await item(b.page, "call mom").locator(".toggle").check();
  await add(b.page, "buy cheap pills");
  await expect(titles(a.page)).toHaveText(["SPAM SPAM", "call mom", "buy cheap pills"], { timeout: 5_000 });
  await expect(item(a.page, "call mom")).toHaveClass(/completed/, { timeout: 5_000 });
  // a edits a todo b also touched, after b: that edit must survive.
  await rename(a.page, "call mom", "call mom today");

  await a.page.getByTestId("admin-toggle").click();
  const rows = a.page.getByTestId("admin-session");
  await expect(rows).toHaveCount(2);
  const vandal = rows.filter({ hasNotText: "this device" });
  await vandal.getByTestId("revert-session").click();
  for (const p of [a.page, b.page]) {
    await expect(titles(p)).toHaveText(["buy milk", "call mom today"], { timeout: 10_000 });
    await expect(item(p, "call mom today")).not.toHaveClass(/completed/);
  }
  await vandal.getByTestId("undo-revert").click();
  for (const p of [a.page, b.page]) {
    await expect(titles(p)).toHaveText(["SPAM SPAM", "call mom today", "buy cheap pills"], { timeout: 10_000 });
    await expect(item(p, "call mom today")).toHaveClass(/completed/);
  }
  expect([...a.errors, ...b.errors]).toEqual([]);
});

test("schema branches: a v1 and a v2 app side by side through the server, then v1 upgrades", async ({ browser }) => {
  const repo = `/data/notes${Date.now()}`;
  type W = { ibex: typeof import("../../packages/db/dist/index.js"); ibexReady: boolean; db: any; V1: any; V2: any };
  const page = async () => {
    const ctx = await browser.newContext({ baseURL: `http://127.0.0.1:${process.env.IBEX_SDK_PORT}` });
    const p = await ctx.newPage();
    const errors: string[] = [];
    p.on("pageerror", (e) => errors.push(String(e)));
    await p.goto("/playwright/pages/sdk.html");
    await p.waitForFunction(() => (window as unknown as W).ibexReady === true);
    return { p, errors };
  };
  // The app in each page: schemas by version, the database on `window.db`.
  const setup = async ([versions, repo, server]: readonly [number[], string, string]) => {
    const w = window as unknown as W;
    const { IbexDB, defineSchema } = w.ibex;
    w.V1 = defineSchema({ ns: "note", version: 1, fields: { title: { type: "string", required: true }, count: { type: "number" } } });
    w.V2 = defineSchema({
      ns: "note",
      version: 2,
      fields: { name: { type: "string", required: true }, count: { type: "number" }, prio: { type: "number", default: 0 } },
      upgrade: [{ rename: { from: "title", to: "name" } }],
    });
    w.db = await IbexDB.open({ name: "notes", schemas: versions.map((v) => (v === 1 ? w.V1 : w.V2)), server, repos: [repo] });
  };
  const v1 = await page();
  const v2 = await page();
  await v1.p.evaluate(setup, [[1], repo, DEMO] as const);
  await v2.p.evaluate(setup, [[1, 2], repo, DEMO] as const);
  const path = await v1.p.evaluate(async (r) => {
    const { db, V1 } = window as unknown as W;
    const n = db.create(r, V1, { title: "milk", count: 1 }, { key: "n1" });
    await db.sync(10_000);
    return n.path as string;
  }, repo);
  const seenByV2 = await v2.p.evaluate(async (path) => {
    const { db, V2 } = window as unknown as W;
    await db.sync(10_000);
    const n = db.item(path, V2);
    const name = n.get("name");
    n.set("prio", 5);
    await db.sync(10_000);
    return name;
  }, path);
  expect(seenByV2).toBe("milk");
  // v1 is never handed v2's value, and keeps writing in v1.
  const v1View = await v1.p.evaluate(async (path) => {
    const { db, V1 } = window as unknown as W;
    await db.sync(10_000);
    const n = db.item(path, V1);
    const seen = { version: n.schema.version, value: n.toObject() };
    n.set("count", 2);
    await db.sync(10_000);
    return seen;
  }, path);
  expect(v1View).toEqual({ version: 1, value: { title: "milk", count: 1 } });
  // v2 sees v1's write, upgraded, and keeps its own.
  const v2View = await v2.p.evaluate(async (path) => {
    const { db, V2 } = window as unknown as W;
    const t0 = Date.now();
    while (db.item(path, V2).get("count") !== 2 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    return db.item(path, V2).toObject();
  }, path);
  expect(v2View).toEqual({ name: "milk", count: 2, prio: 5 });
  // The v1 app is upgraded (same storage, reloaded): it sees everything.
  await v1.p.evaluate(async () => (window as unknown as W).db.close());
  await v1.p.reload();
  await v1.p.waitForFunction(() => (window as unknown as W).ibexReady === true);
  await v1.p.evaluate(setup, [[1, 2], repo, DEMO] as const);
  const upgraded = await v1.p.evaluate(async (path) => {
    const { db, V2 } = window as unknown as W;
    await db.sync(10_000);
    return db.item(path, V2).toObject();
  }, path);
  expect(upgraded).toEqual({ name: "milk", count: 2, prio: 5 });
  expect([...v1.errors, ...v2.errors]).toEqual([]);
});
