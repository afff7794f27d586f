// The server from npm, as a frontend developer gets it: the packed
// @ibexdb/server, @ibexdb/server-linux-x64 and @ibexdb/db tarballs
// installed into an empty folder, `npx ibex-server` started from there, and
// two Node clients in that folder syncing an item through it.

import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const work = mkdtempSync(join(tmpdir(), "ibex-npm-server-"));
const app = join(work, "app");
const env = { ...process.env, npm_config_cache: process.env.IBEX_NPM_CACHE ?? join(tmpdir(), "ibex-npm-cache"), npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };
let server: ChildProcess | null = null;

beforeAll(() => {
  const out = join(work, "tarballs");
  for (const pkg of ["packages/server-linux-x64", "packages/server", "packages/db"]) {
    execFileSync("pnpm", ["pack", "--pack-destination", out], { cwd: join(repo, pkg), stdio: "pipe" });
  }
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  execFileSync("npm", ["install", "--loglevel=error", ...readdirSync(out).map((f) => join(out, f))], { cwd: app, env, stdio: "pipe" });
}, 240_000);

afterAll(() => {
  server?.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
});

async function startServer(port: number): Promise<void> {
  server = spawn("npx", ["ibex-server", "--port", String(port), "--host", "127.0.0.1", "--data", join(work, "data")], { cwd: app, env, stdio: "pipe" });
  let out = "";
  server.stderr!.on("data", (d) => (out += d));
  for (let i = 0; i < 200; i++) {
    if (server.exitCode !== null) throw new Error(`npx ibex-server exited ${server.exitCode}: ${out}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`npx ibex-server did not answer /healthz: ${out}`);
}

describe("@ibexdb/server from npm", () => {
  it("npx ibex-server runs the prebuilt binary, and two Node clients sync through it", async () => {
    const port = 30_000 + Math.floor(Math.random() * 10_000);
    await startServer(port);
    // A script in the app folder, importing the installed @ibexdb/db.
    writeFileSync(
      join(app, "sync.mjs"),
      `import { IbexDB, defineSchema } from "@ibexdb/db";
const Note = defineSchema({ ns: "note", version: 1, fields: { text: { type: "string", required: true } } });
const server = "http://127.0.0.1:${port}";
const a = await IbexDB.open({ name: "a", schemas: [Note], server });
a.create("/data/notes", Note, { text: "from a" }, { key: "n1" });
await a.sync();
const b = await IbexDB.open({ name: "b", schemas: [Note], server, repos: ["/data/notes"] });
await b.sync();
const got = b.item("/data/notes/n1", Note)?.get("text");
const synced = b.status.synced;
await a.close(); await b.close();
console.log(JSON.stringify({ got, synced }));
`,
    );
    const run = spawnSync(process.execPath, ["sync.mjs"], { cwd: app, env, encoding: "utf8", timeout: 60_000 });
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout.trim().split("\n").pop()!)).toEqual({ got: "from a", synced: true });
  }, 120_000);

  it("without a prebuilt binary for the platform, says how to build one", () => {
    const run = spawnSync("npx", ["ibex-server", "--version"], { cwd: app, env: { ...env, IBEX_SERVER_PLATFORM: "darwin-arm64" }, encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("no prebuilt binary for darwin-arm64");
    expect(run.stderr).toContain("cargo build --release -p ibex-server");
  });

  it("passes arguments and the exit code through", () => {
    const run = spawnSync("npx", ["ibex-server", "--version"], { cwd: app, env, encoding: "utf8" });
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/ibex-server \d+\.\d+\.\d+/);
  });
});
