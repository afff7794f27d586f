// The package's entries as bundlers and Node resolve them: browsers and
// bundlers must never reach Node code (a bundler would pull in node:fs and
// fail, or warn and ship a dead chunk), and Node must get its own engine
// home. Checked on the built files in dist/, the ones that are published.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Every module specifier in a built file: static imports and exports,
 * side-effect imports, and dynamic `import("…")` with a literal. */
function specifiers(file: string): string[] {
  const src = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const re of [/(?:^|[;\s])(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g, /(?:^|[;\s])import\s*["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g]) {
    for (const m of src.matchAll(re)) out.push(m[1]!);
  }
  return out;
}

/** The files an entry reaches through relative imports, and the bare or
 * `node:` specifiers it asks for on the way. */
function reach(entry: string): { files: string[]; external: string[] } {
  const files = new Set<string>();
  const external = new Set<string>();
  const todo = [join(pkg, entry)];
  while (todo.length) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    for (const s of specifiers(f)) {
      if (s.startsWith(".")) todo.push(resolve(dirname(f), s));
      else external.add(s);
    }
  }
  return { files: [...files].map((f) => relative(pkg, f)).sort(), external: [...external].sort() };
}

/** What Node's own resolver gives for `@ibexdb/db` under these conditions
 * (the package resolves itself by name through its "exports"). */
function resolveAs(conditions: string[]): string {
  const args = conditions.flatMap((c) => ["--conditions", c]);
  const url = execFileSync(process.execPath, [...args, "--input-type=module", "-e", 'console.log(import.meta.resolve("@ibexdb/db"))'], { cwd: pkg, encoding: "utf8" }).trim();
  return relative(pkg, fileURLToPath(url));
}

describe("package entries", () => {
  it("the browser entry reaches no Node code", () => {
    const { files, external } = reach("dist/index.js");
    expect(files).toContain("dist/main/database.js");
    expect(files.filter((f) => f.startsWith("dist/node/") || f === "dist/index.node.js")).toEqual([]);
    expect(external.filter((s) => s.startsWith("node:") || s === "ws")).toEqual([]);
    // The worker it starts, with everything it imports: no Node either.
    const worker = reach("dist/engine/worker.js");
    expect(worker.external.filter((s) => s.startsWith("node:") || s === "ws")).toEqual([]);
  });

  it("the Node entry runs the engine in process, with files and ws", () => {
    const { files, external } = reach("dist/index.node.js");
    expect(files).toContain("dist/node/index.js");
    expect(external).toContain("node:fs");
    expect(external).toContain("ws");
  });

  it("export conditions: bundlers for browsers get index.js, Node gets index.node.js", () => {
    expect(resolveAs([])).toBe(join("dist", "index.node.js"));
    expect(resolveAs(["browser"])).toBe(join("dist", "index.js"));
    for (const f of ["dist/index.js", "dist/index.node.js", "dist/index.d.ts", "dist/engine/worker.js"]) expect(existsSync(join(pkg, f)), f).toBe(true);
  });

  it("the browser entry loaded in Node says which entry to use", async () => {
    const { IbexDB } = await import(join(pkg, "dist/index.js"));
    await expect(IbexDB.open({ name: "t" })).rejects.toMatchObject({ code: "ERR_CONFIG", message: expect.stringContaining("index.node.js") });
  });
});
