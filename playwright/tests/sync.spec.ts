// Two browsers (separate contexts: separate OPFS, separate engines) on the
// demo, syncing through ibex-server: live edits, and offline edits on both
// sides converging when they come back.

import { type Browser, type Page, expect, test } from "@playwright/test";

const DEMO = `http://127.0.0.1:${process.env.IBEX_DEMO_PORT}/`;

async function open(browser: Browser, list: string) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${DEMO}?list=${list}`);
  await expect(page.getByPlaceholder("What needs to be done?")).toBeVisible();
  await expect(page.getByTestId("online")).toHaveText("Online · synced", { timeout: 10_000 });
  return { ctx, page, errors };
}

async function add(page: Page, title: string) {
  await page.getByPlaceholder("What needs to be done?").fill(title);
  await page.getByPlaceholder("What needs to be done?").press("Enter");
}

const titles = (p: Page) => p.getByTestId("todo-title");
const item = (p: Page, title: string) => p.getByTestId("todo-item").filter({ has: p.getByText(title, { exact: true }) });

test("two browsers see each other's edits live", async ({ browser }) => {
  const list = `live${Date.now()}`;
  const a = await open(browser, list);
  const b = await open(browser, list);
  await add(a.page, "from a");
  await expect(titles(b.page)).toHaveText(["from a"], { timeout: 5_000 });
  await add(b.page, "from b");
  await expect(titles(a.page)).toHaveText(["from a", "from b"], { timeout: 5_000 });
  await item(a.page, "from b").locator(".toggle").check();
  await expect(item(b.page, "from b")).toHaveClass(/completed/, { timeout: 5_000 });
  await expect(b.page.getByTestId("todo-count")).toHaveText("1 item left");
  expect([...a.errors, ...b.errors]).toEqual([]);
});

test("offline edits on both sides converge when they come back online", async ({ browser }) => {
  const list = `offline${Date.now()}`;
  const a = await open(browser, list);
  await add(a.page, "shared");
  await add(a.page, "other");
  const b = await open(browser, list);
  await expect(titles(b.page)).toHaveText(["shared", "other"], { timeout: 5_000 });

  await a.ctx.setOffline(true);
  await b.ctx.setOffline(true);
  await expect(a.page.getByTestId("online")).toContainText("Offline", { timeout: 5_000 });
  await expect(b.page.getByTestId("online")).toContainText("Offline", { timeout: 5_000 });

  // The same todo on both sides (different fields), and different todos.
  await item(a.page, "shared").getByTestId("todo-title").dblclick();
  await item(a.page, "shared").locator(".edit").fill("shared, renamed by a");
  await item(a.page, "shared").locator(".edit").press("Enter");
  await add(a.page, "only a");
  await item(b.page, "shared").locator(".toggle").check();
  await add(b.page, "only b");
  await item(b.page, "other").hover();
  await item(b.page, "other").locator(".destroy").click();
  await expect(titles(a.page)).toHaveText(["shared, renamed by a", "other", "only a"]);

  await a.ctx.setOffline(false);
  await b.ctx.setOffline(false);
  const want = ["shared, renamed by a", "only a", "only b"];
  for (const p of [a.page, b.page]) {
    await expect(p.getByTestId("online")).toHaveText("Online · synced", { timeout: 20_000 });
    await expect(async () => expect((await titles(p).allTextContents()).sort()).toEqual([...want].sort())).toPass({ timeout: 10_000 });
    await expect(item(p, "shared, renamed by a")).toHaveClass(/completed/);
  }
  expect([...a.errors, ...b.errors]).toEqual([]);
});
