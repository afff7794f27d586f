// What `npm install @ibexdb/db` gets: the packed tarball holds the entries,
// the worker, the WASM module, a README and LICENSE, and the sources its
// source maps point at (so a dev server resolves them without warnings).

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = mkdtempSync(join(tmpdir(), "ibex-pack-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Packs the package as it would be published and unpacks it. */
function packed(): string {
  execFileSync("pnpm", ["pack", "--pack-destination", out], { cwd: pkg, stdio: "pipe" });
  const tgz = readdirSync(out).find((f) => f.endsWith(".tgz"))!;
  execFileSync("tar", ["xzf", join(out, tgz), "-C", out]);
  return join(out, "package");
}

function files(dir: string, base = ""): string[] {
  return readdirSync(join(dir, base), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(dir, posix.join(base, e.name)) : [posix.join(base, e.name)]));
}

describe("the published tarball", () => {
  it("holds entries, worker, WASM, README, LICENSE and the sources its maps name", () => {
    const root = packed();
    const list = new Set(files(root));
    for (const f of ["package.json", "README.md", "LICENSE", "dist/index.js", "dist/index.node.js", "dist/index.d.ts", "dist/engine/worker.js", "wasm/ibex_wasm_bg.wasm", "wasm/ibex_wasm.js"]) {
      expect(list.has(f), f).toBe(true);
    }
    expect([...list].filter((f) => f.startsWith("test/") || f.includes(".tsbuild"))).toEqual([]);
    const maps = [...list].filter((f) => f.endsWith(".map"));
    expect(maps.length).toBeGreaterThan(10);
    const missing: string[] = [];
    for (const m of maps) {
      const { sources } = JSON.parse(readFileSync(join(root, m), "utf8")) as { sources: string[] };
      for (const s of sources) {
        const target = posix.normalize(posix.join(posix.dirname(m), s));
        if (!list.has(target)) missing.push(`${m} → ${s}`);
      }
    }
    expect(missing).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    expect(manifest.exports["."]).toMatchObject({ browser: "./dist/index.js", node: "./dist/index.node.js" });
  });
});
