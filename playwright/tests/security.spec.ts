// Users and private data in real Chromium: two browsers log in as two
// users with the development server's one-time links; what one user keeps
// in `/user/<id>` is visible to that user's other browser and never to the
// other user's.

import { readFileSync } from "node:fs";

import { type Browser, type Page, expect, test } from "@playwright/test";

const DEMO = `http://127.0.0.1:${process.env.IBEX_DEMO_PORT}/`;

/** The link the server printed for `email` (the development verifier). */
async function linkFor(email: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const lines = readFileSync(process.env.IBEX_DEMO_LOG!, "utf8").split("\n");
    const hit = lines.reverse().find((l) => l.startsWith(`IBEX LOGIN LINK ${email} `));
    if (hit) return hit.split(" ").pop()!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no login link for ${email} in ${process.env.IBEX_DEMO_LOG}`);
}

async function loggedIn(browser: Browser, email: string, list: string) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${DEMO}?list=${list}`);
  await expect(page.getByTestId("online")).toHaveText("Online · synced", { timeout: 10_000 });
  await page.getByLabel("E-mail").fill(email);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("account-message")).toContainText("sent", { timeout: 10_000 });
  // Open the link in the same browser, as a user clicking it would, and
  // say yes to the address it is for.
  const link = await linkFor(email);
  await page.goto(link.replace(/^http:\/\/[^/]+\//, DEMO));
  await expect(page.getByTestId("login-offer")).toContainText(email, { timeout: 10_000 });
  await page.getByRole("button", { name: `Log in as ${email}` }).click();
  await expect(page.getByTestId("user")).toHaveText(email, { timeout: 10_000 });
  return { ctx, page, errors };
}

async function addPrivate(page: Page, title: string) {
  await page.getByLabel("Private todo").fill(title);
  await page.getByLabel("Private todo").press("Enter");
}

test("a user's /user/<id> todos are not visible to another user", async ({ browser }) => {
  const list = `sec${Date.now()}`;
  const alice = await loggedIn(browser, `alice${Date.now()}@example.org`, list);
  const aliceEmail = await alice.page.getByTestId("user").textContent();
  const bob = await loggedIn(browser, `bob${Date.now()}@example.org`, list);
  await addPrivate(alice.page, "alice's secret");
  await expect(alice.page.getByTestId("private-todo")).toHaveText(["alice's secret"]);
  await alice.page.evaluate(() => (window as any).__db.sync());
  // Alice's second browser sees it (the data did reach the server)…
  const alice2 = await loggedIn(browser, aliceEmail!, list);
  await expect(alice2.page.getByTestId("private-todo")).toHaveText(["alice's secret"], { timeout: 10_000 });
  // …bob's never does: his private list is his own, and asking for alice's
  // repository is refused by the server.
  await addPrivate(bob.page, "bob's own");
  await expect(bob.page.getByTestId("private-todo")).toHaveText(["bob's own"]);
  const aliceRepo = await alice.page.evaluate(() => `/user/${(window as any).__db.user.id}`);
  const read = await bob.page.evaluate(async (repo) => {
    const db = (window as any).__db;
    // The server's answer to bob asking for the repository: a refusal
    // naming it (waited for, not assumed after a delay).
    const refused = new Promise<string>((resolve) => {
      const off = db.onError((e: { code: string; message: string }) => {
        if (e.message.includes(repo)) {
          off();
          resolve(e.code);
        }
      });
    });
    await db.open(repo);
    const code = await Promise.race([refused, new Promise<string>((r) => setTimeout(() => r("no answer from the server within 10 s"), 10_000))]);
    return { code, keys: db.keys(repo).length };
  }, aliceRepo);
  expect(read).toEqual({ code: "ERR_FORBIDDEN", keys: 0 });
  // And bob cannot write there: refused before anything is stored.
  const refused = await bob.page.evaluate(
    (repo) => {
      const db = (window as any).__db;
      try {
        db.create(repo, (window as any).__Todo, { title: "bob was here", createdAt: new Date() });
        return "written";
      } catch (e) {
        return (e as { code?: string }).code;
      }
    },
    aliceRepo,
  );
  expect(refused).toBe("ERR_FORBIDDEN");
  await expect(alice2.page.getByTestId("private-todo")).toHaveText(["alice's secret"]);
  expect([...alice.errors, ...bob.errors, ...alice2.errors]).toEqual([]);
});

test("a login link asks first: someone else's link cannot sign this browser in", async ({ browser }) => {
  // The attacker asks for a link to their own account…
  const attacker = `mallory${Date.now()}@example.org`;
  const m = await browser.newContext();
  const mp = await m.newPage();
  await mp.goto(`${DEMO}?list=csrf${Date.now()}`);
  await expect(mp.getByTestId("online")).toHaveText("Online · synced", { timeout: 10_000 });
  await mp.getByLabel("E-mail").fill(attacker);
  await mp.getByRole("button", { name: "Log in" }).click();
  await expect(mp.getByTestId("account-message")).toContainText("sent", { timeout: 10_000 });
  const link = await linkFor(attacker);
  // …and the victim opens it: asked, declines, stays who they were.
  const v = await browser.newContext();
  const vp = await v.newPage();
  const errors: string[] = [];
  vp.on("pageerror", (e) => errors.push(String(e)));
  await vp.goto(link.replace(/^http:\/\/[^/]+\//, DEMO));
  await expect(vp.getByTestId("login-offer")).toContainText(attacker, { timeout: 10_000 });
  await vp.getByRole("button", { name: "Cancel" }).click();
  await expect(vp.getByTestId("account-message")).toHaveText("Login cancelled");
  await expect(vp.getByTestId("user")).toHaveCount(0);
  expect(await vp.evaluate(() => (window as any).__db.user)).toBeNull();
  expect(errors).toEqual([]);
});
