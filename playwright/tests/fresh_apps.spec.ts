// `npm install` and go, as a new user does it: a fresh React + TypeScript
// app from Vite's official template (Vite 7 and Vite 8), the packed
// @ibexdb/db and @ibexdb/react tarballs installed into it, the README's
// React example pasted in unchanged as src/App.tsx, vite.config untouched.
// Then `tsc -b`, the production build and the dev server must work: add a
// todo, reload, see it, with no console errors and no bundler warnings.
//
// Templates and dependencies come from the npm registry (one shared npm
// cache); each app is created and built once per run.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { type Page, expect, test } from "@playwright/test";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const work = mkdtempSync(join(tmpdir(), "ibex-fresh-"));
const npmEnv = { ...process.env, npm_config_cache: process.env.IBEX_NPM_CACHE ?? join(tmpdir(), "ibex-npm-cache"), npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

/** The React example of the README, exactly as written there. */
function readmeApp(): string {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## React (`@ibexdb/react`)"));
  const m = /```tsx\n\/\/ src\/App\.tsx\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error("README.md's React section has no ```tsx block starting with // src/App.tsx");
  return `// src/App.tsx\n${m[1]}`;
}

let tarballs: string[] = [];
test.beforeAll(() => {
  const out = join(work, "tarballs");
  for (const pkg of ["packages/db", "react"]) execFileSync("pnpm", ["pack", "--pack-destination", out], { cwd: join(repo, pkg), stdio: "pipe" });
  tarballs = readdirSync(out).map((f) => join(out, f));
});
test.afterAll(() => rmSync(work, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, env: npmEnv, encoding: "utf8", stdio: "pipe", timeout: 240_000 });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}:\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
}

/** Creates the app from the template, installs the tarballs, pastes the example. */
function createApp(name: string, createVite: string): string {
  sh("npx", ["-y", createVite, name, "--template", "react-ts", "--no-interactive"], work);
  const dir = join(work, name);
  sh("npm", ["install", "--loglevel=error"], dir);
  sh("npm", ["install", "--loglevel=error", ...tarballs], dir);
  writeFileSync(join(dir, "src", "App.tsx"), readmeApp());
  return dir;
}

/** Starts `npx vite …` and resolves with its URL once it listens. */
async function serve(dir: string, args: string[]): Promise<{ url: string; proc: ChildProcess; output: () => string }> {
  const port = 41_000 + Math.floor(Math.random() * 9_000);
  const proc = spawn("npx", ["vite", ...args, "--port", String(port), "--strictPort", "--host", "127.0.0.1"], { cwd: dir, env: npmEnv, stdio: "pipe" });
  let out = "";
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  const url = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`vite ${args.join(" ")} exited: ${out}`);
    try {
      if ((await fetch(url)).ok) return { url, proc, output: () => out };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill();
  throw new Error(`vite ${args.join(" ")} did not listen on ${url}: ${out}`);
}

/** The user's path: add a todo, see it saved, reload, still there. */
async function addReloadSee(page: Page, url: string) {
  const problems: string[] = [];
  page.on("console", (m) => (m.type() === "error" || m.type() === "warning") && problems.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`pageerror: ${e}`));
  await page.goto(url);
  const input = page.getByPlaceholder("What needs doing?");
  await input.fill("Buy oat milk", { timeout: 20_000 });
  await input.press("Enter");
  await expect(page.getByText("Buy oat milk")).toBeVisible();
  await expect(page.getByText("All changes saved")).toBeVisible();
  await page.reload();
  await expect(page.getByText("Buy oat milk")).toBeVisible({ timeout: 15_000 });
  expect(problems).toEqual([]);
}

const bundlerNoise = /externalized for browser compatibility|node:fs|node:path|Sourcemap for .* points to missing source|Failed to load source map|\bwarning\b/i;

for (const [vite, createVite] of [
  ["Vite 7", "create-vite@7.1.3"],
  ["Vite 8", "create-vite@9.3.0"],
] as const) {
  test.describe(`a fresh ${vite} React + TS app`, () => {
    test.describe.configure({ mode: "serial", timeout: 300_000 });
    let dir = "";

    test("installs the tarballs, type-checks and builds without warnings", () => {
      dir = createApp(vite.replace(" ", "").toLowerCase(), createVite);
      const version = JSON.parse(readFileSync(join(dir, "node_modules/vite/package.json"), "utf8")).version as string;
      expect(version.split(".")[0]).toBe(vite.split(" ")[1]);
      sh("npx", ["tsc", "-b"], dir);
      const build = sh("npx", ["vite", "build"], dir);
      expect(build).toContain("built in");
      expect(build.split("\n").filter((l) => bundlerNoise.test(l))).toEqual([]);
    });

    test("the production build runs: add, reload, see", async ({ page }) => {
      const s = await serve(dir, ["preview"]);
      try {
        await addReloadSee(page, s.url);
      } finally {
        s.proc.kill();
      }
    });

    test("the dev server runs: add, reload, see", async ({ page }) => {
      const s = await serve(dir, []);
      try {
        await addReloadSee(page, s.url);
        expect(s.output().split("\n").filter((l) => bundlerNoise.test(l))).toEqual([]);
      } finally {
        s.proc.kill();
      }
    });
  });
}
