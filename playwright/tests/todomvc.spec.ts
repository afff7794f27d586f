// The demo, TodoMVC behaviour by behaviour, plus what Ibex adds: history,
// persistence across reload, and render counts. Every test also asserts
// that the page logged no console errors.

import { type Page, expect, test as base } from "@playwright/test";

const DEMO = `http://127.0.0.1:${process.env.IBEX_DEMO_PORT}/`;

declare global {
  interface Window {
    __db: { flush(): Promise<void> };
    __renders: { rows: Record<string, number>; counter: number; list: number; app: number };
  }
}

const test = base.extend<{ app: Page }>({
  app: async ({ page }, use, testInfo) => {
    const errors: string[] = [];
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    page.on("pageerror", (e) => errors.push(String(e)));
    // Every test its own list on the shared server.
    await page.goto(`${DEMO}?list=t${testInfo.testId.replace(/[^A-Za-z0-9]/g, "").slice(0, 40)}`);
    await expect(page.getByPlaceholder("What needs to be done?")).toBeVisible();
    await use(page);
    await testInfo.attach("screenshot", { body: await page.screenshot(), contentType: "image/png" });
    expect(errors, "console errors").toEqual([]);
  },
});

async function add(page: Page, ...titles: string[]) {
  const input = page.getByPlaceholder("What needs to be done?");
  for (const t of titles) {
    await input.fill(t);
    await input.press("Enter");
  }
}

const items = (page: Page) => page.getByTestId("todo-item");
const titles = (page: Page) => page.getByTestId("todo-title");

test("Enter adds a trimmed todo, clears the input, and ignores empty input", async ({ app }) => {
  await add(app, "  buy milk  ", "   ", "walk the dog");
  await expect(titles(app)).toHaveText(["buy milk", "walk the dog"]);
  await expect(app.getByPlaceholder("What needs to be done?")).toHaveValue("");
});

test("the checkbox toggles a todo between active and completed", async ({ app }) => {
  await add(app, "one", "two");
  await items(app).nth(0).locator(".toggle").check();
  await expect(items(app).nth(0)).toHaveClass(/completed/);
  await expect(items(app).nth(1)).not.toHaveClass(/completed/);
  await items(app).nth(0).locator(".toggle").uncheck();
  await expect(items(app).nth(0)).not.toHaveClass(/completed/);
});

test("Mark all as complete toggles every todo", async ({ app }) => {
  await add(app, "a", "b", "c");
  await app.getByText("Mark all as complete").click();
  await expect(items(app).filter({ hasNot: app.locator(".completed") })).toHaveCount(3);
  for (let i = 0; i < 3; i++) await expect(items(app).nth(i)).toHaveClass(/completed/);
  await expect(app.getByTestId("todo-count")).toHaveText("0 items left");
  await app.getByText("Mark all as complete").click();
  for (let i = 0; i < 3; i++) await expect(items(app).nth(i)).not.toHaveClass(/completed/);
});

test("double-click edits; Enter and blur save, Escape cancels, empty deletes", async ({ app }) => {
  await add(app, "first", "second", "third");
  await titles(app).nth(0).dblclick();
  const edit = items(app).nth(0).locator(".edit");
  await expect(edit).toBeFocused();
  await edit.fill("  first edited  ");
  await edit.press("Enter");
  await expect(titles(app).nth(0)).toHaveText("first edited");

  await titles(app).nth(1).dblclick();
  await items(app).nth(1).locator(".edit").fill("second blurred");
  await app.getByPlaceholder("What needs to be done?").click();
  await expect(titles(app).nth(1)).toHaveText("second blurred");

  await titles(app).nth(2).dblclick();
  await items(app).nth(2).locator(".edit").fill("never saved");
  await items(app).nth(2).locator(".edit").press("Escape");
  await expect(titles(app).nth(2)).toHaveText("third");

  await titles(app).nth(2).dblclick();
  await items(app).nth(2).locator(".edit").fill("   ");
  await items(app).nth(2).locator(".edit").press("Enter");
  await expect(titles(app)).toHaveText(["first edited", "second blurred"]);
});

test("the delete button removes a todo", async ({ app }) => {
  await add(app, "keep", "remove");
  await items(app).nth(1).hover();
  await items(app).nth(1).locator(".destroy").click();
  await expect(titles(app)).toHaveText(["keep"]);
});

test("the counter says N items left, 1 item left", async ({ app }) => {
  await add(app, "a", "b");
  await expect(app.getByTestId("todo-count")).toHaveText("2 items left");
  await items(app).nth(0).locator(".toggle").check();
  await expect(app.getByTestId("todo-count")).toHaveText("1 item left");
});

test("filters show all, active and completed todos by URL", async ({ app }) => {
  await add(app, "active one", "done one");
  await items(app).nth(1).locator(".toggle").check();
  await app.getByRole("link", { name: "Active" }).click();
  await expect(app).toHaveURL(/#\/active$/);
  await expect(titles(app)).toHaveText(["active one"]);
  await expect(app.getByRole("link", { name: "Active" })).toHaveClass("selected");
  await app.getByRole("link", { name: "Completed" }).click();
  await expect(titles(app)).toHaveText(["done one"]);
  await app.getByRole("link", { name: "All" }).click();
  await expect(titles(app)).toHaveText(["active one", "done one"]);
  await app.goto(`${app.url().split("#")[0]}#/completed`);
  await expect(titles(app)).toHaveText(["done one"]);
});

test("Clear completed shows only when something is completed and removes those", async ({ app }) => {
  await add(app, "x", "y");
  await expect(app.getByRole("button", { name: "Clear completed" })).toHaveCount(0);
  await items(app).nth(0).locator(".toggle").check();
  await app.getByRole("button", { name: "Clear completed" }).click();
  await expect(titles(app)).toHaveText(["y"]);
  await expect(app.getByRole("button", { name: "Clear completed" })).toHaveCount(0);
});

test("todos persist across reload", async ({ app }) => {
  await add(app, "persist me", "and me");
  await items(app).nth(1).locator(".toggle").check();
  await expect(app.getByTestId("pending")).toHaveText("all changes saved on this device");
  await app.evaluate(() => window.__db.flush());
  await app.reload();
  await expect(titles(app)).toHaveText(["persist me", "and me"]);
  await expect(items(app).nth(1)).toHaveClass(/completed/);
  await expect(app.getByTestId("todo-count")).toHaveText("1 item left");
});

test("the history panel lists who changed what", async ({ app }) => {
  await add(app, "tracked");
  await items(app).nth(0).locator(".toggle").check();
  await titles(app).nth(0).dblclick();
  await items(app).nth(0).locator(".edit").fill("tracked, renamed");
  await items(app).nth(0).locator(".edit").press("Enter");
  await items(app).nth(0).hover();
  await items(app).nth(0).getByRole("button", { name: "Show history" }).click();
  const entries = items(app).nth(0).getByTestId("history-entry");
  await expect(entries).toHaveCount(3);
  await expect(entries.nth(0)).toContainText("title: “tracked” → “tracked, renamed”");
  await expect(entries.nth(1)).toContainText("completed: false → true");
  await expect(entries.nth(2)).toContainText("this device");
  await expect(entries.nth(2)).toContainText("created it");
});

test("toggling one of 200 todos re-renders only that row and the counter", async ({ app }) => {
  await add(app, ...Array.from({ length: 200 }, (_, i) => `todo ${String(i).padStart(3, "0")}`));
  await expect(items(app)).toHaveCount(200);
  await expect(app.getByTestId("todo-count")).toHaveText("200 items left");
  const before = await app.evaluate(() => JSON.parse(JSON.stringify(window.__renders)));
  await items(app).nth(57).locator(".toggle").check();
  await expect(app.getByTestId("todo-count")).toHaveText("199 items left");
  await expect(items(app).nth(57)).toHaveClass(/completed/);
  const after = await app.evaluate(() => JSON.parse(JSON.stringify(window.__renders)));
  const changedRows = Object.keys(after.rows).filter((p) => after.rows[p] !== before.rows[p]);
  expect(changedRows).toHaveLength(1);
  expect(after.counter - before.counter).toBe(1);
  expect(after.list - before.list).toBe(0);
  expect(after.app - before.app).toBe(0);
});

// Attached to the report on every run; IBEX_UPDATE_SCREENSHOT=1 also
// rewrites the committed demo/screenshot.png used by the README.
test("the screenshot for the README", async ({ app }, testInfo) => {
  await add(app, "Try Ibex", "Toggle me", "Double-click to edit", "Works offline");
  await items(app).nth(1).locator(".toggle").check();
  await titles(app).nth(0).dblclick();
  await items(app).nth(0).locator(".edit").fill("Try Ibex: history, restore, playback");
  await items(app).nth(0).locator(".edit").press("Enter");
  await items(app).nth(0).hover();
  await items(app).nth(0).getByRole("button", { name: "Show history" }).click();
  await expect(items(app).nth(0).getByTestId("history-entry")).toHaveCount(2);
  await app.setViewportSize({ width: 900, height: 640 });
  const shot = await app.screenshot();
  await testInfo.attach("demo", { body: shot, contentType: "image/png" });
  if (process.env.IBEX_UPDATE_SCREENSHOT) (await import("node:fs")).writeFileSync("../demo/screenshot.png", shot);
});
