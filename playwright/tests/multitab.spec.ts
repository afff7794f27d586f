// Several tabs of one database share one engine: the tab holding the Web
// Lock leads (its worker owns OPFS and the server connection), the others
// follow over a BroadcastChannel. No tab may see NoModificationAllowedError
// or lose a write that was flushed, whatever happens to the leader.

import { type BrowserContext, type Page, expect, test } from "@playwright/test";

const DEMO = `http://127.0.0.1:${process.env.IBEX_DEMO_PORT}/`;

declare global {
  interface Window {
    __db: { flush(): Promise<void>; sync(t?: number): Promise<void>; status: { leader: boolean; synced: boolean } };
  }
}

async function openTab(ctx: BrowserContext, list: string, errors: string[]): Promise<Page> {
  const page = await ctx.newPage();
  page.on("console", (m) => m.type() === "error" && errors.push(`${m.text()}`));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${DEMO}?list=${list}`);
  await expect(page.getByPlaceholder("What needs to be done?")).toBeVisible();
  return page;
}

async function add(page: Page, title: string) {
  await page.getByPlaceholder("What needs to be done?").fill(title);
  await page.getByPlaceholder("What needs to be done?").press("Enter");
}

const titles = async (p: Page) => (await p.getByTestId("todo-title").allTextContents()).sort();
const leaders = async (pages: Page[]) => (await Promise.all(pages.map((p) => p.evaluate(() => window.__db.status.leader)))).filter(Boolean).length;

test("writes from each of three tabs appear in the others, with one leader", async ({ browser }) => {
  const ctx = await browser.newContext();
  const errors: string[] = [];
  const list = `tabs${Date.now()}`;
  const pages = [await openTab(ctx, list, errors), await openTab(ctx, list, errors), await openTab(ctx, list, errors)];
  await expect.poll(() => leaders(pages)).toBe(1);
  for (const [i, p] of pages.entries()) await add(p, `from tab ${i}`);
  const want = ["from tab 0", "from tab 1", "from tab 2"];
  for (const p of pages) await expect.poll(() => titles(p)).toEqual(want);
  // Live queries follow too: toggling in one tab updates the counter in another.
  await pages[2]!.getByTestId("todo-item").first().locator(".toggle").check();
  await expect(pages[0]!.getByTestId("todo-count")).toHaveText("2 items left");
  expect(errors).toEqual([]);
  await ctx.close();
});

test("closing the leader hands over without losing writes", async ({ browser }) => {
  const ctx = await browser.newContext();
  const errors: string[] = [];
  const list = `handover${Date.now()}`;
  const pages = [await openTab(ctx, list, errors), await openTab(ctx, list, errors), await openTab(ctx, list, errors)];
  await expect.poll(() => leaders(pages)).toBe(1);
  const leaderIdx = (await Promise.all(pages.map((p) => p.evaluate(() => window.__db.status.leader)))).indexOf(true);
  const leader = pages[leaderIdx]!;
  const rest = pages.filter((_, i) => i !== leaderIdx);
  await add(leader, "before close");
  await add(rest[0]!, "follower 1 before");
  await leader.close();
  const t0 = Date.now();
  // The followers keep writing across the hand-over.
  await add(rest[0]!, "follower 1 during");
  await add(rest[1]!, "follower 2 during");
  await expect.poll(() => leaders(rest), { timeout: 5_000 }).toBe(1);
  const handover = Date.now() - t0;
  await add(rest[1]!, "follower 2 after");
  for (const p of rest) await p.evaluate(() => window.__db.flush());
  const want = ["before close", "follower 1 before", "follower 1 during", "follower 2 after", "follower 2 during"];
  for (const p of rest) await expect.poll(() => titles(p)).toEqual(want);
  for (const p of rest) await p.reload();
  for (const p of rest) await expect.poll(() => titles(p)).toEqual(want);
  console.log(`leader hand-over observed within ${handover} ms`);
  expect(errors).toEqual([]);
  await ctx.close();
});

test("reload storm: 4 tabs, 50 reloads while writing, no flushed write lost", async ({ browser }) => {
  const ctx = await browser.newContext();
  const errors: string[] = [];
  const list = `storm${Date.now()}`;
  const pages = [await openTab(ctx, list, errors), await openTab(ctx, list, errors), await openTab(ctx, list, errors), await openTab(ctx, list, errors)];
  const acknowledged: string[] = [];
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  console.log("reload storm seed 12345");
  for (let r = 0; r < 50; r++) {
    const p = pages[Math.floor(rand() * pages.length)]!;
    const title = `write ${r}`;
    await add(p, title);
    await p.evaluate(() => window.__db.flush());
    acknowledged.push(title);
    const victim = pages[Math.floor(rand() * pages.length)]!;
    await victim.reload();
    await expect(victim.getByPlaceholder("What needs to be done?")).toBeVisible();
  }
  const check = await openTab(ctx, list, errors);
  await expect.poll(() => titles(check), { timeout: 10_000 }).toEqual([...acknowledged].sort());
  expect(errors.join("\n")).not.toContain("NoModificationAllowedError");
  expect(errors).toEqual([]);
  await ctx.close();
});

test("a follower's writes reach the server and another browser", async ({ browser }) => {
  const list = `follower${Date.now()}`;
  const errors: string[] = [];
  const a = await browser.newContext();
  const pa = [await openTab(a, list, errors), await openTab(a, list, errors)];
  await expect.poll(() => leaders(pa)).toBe(1);
  const follower = (await pa[0]!.evaluate(() => window.__db.status.leader)) ? pa[1]! : pa[0]!;
  const b = await browser.newContext();
  const pb = await openTab(b, list, errors);
  await add(follower, "written by a follower tab");
  await expect.poll(() => titles(pb), { timeout: 10_000 }).toEqual(["written by a follower tab"]);
  expect(errors).toEqual([]);
  await a.close();
  await b.close();
});
