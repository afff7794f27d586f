// A real ibex-server (the binary `cargo test` builds) on 127.0.0.1, for
// Node clients to sync through.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const SERVER_BIN = resolve(dirname(fileURLToPath(import.meta.url)), "../../../target/debug/ibex-server");

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

export interface Server {
  url: string;
  port: number;
  data: string;
  proc: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts the server binary; resolves once /healthz answers. */
export async function startServer(opts: { data?: string; port?: number; args?: string[] } = {}): Promise<Server> {
  if (!existsSync(SERVER_BIN)) throw new Error(`${SERVER_BIN} is missing: run \`cargo build -p ibex-server\` (npm test does)`);
  const port = opts.port ?? (await freePort());
  const data = opts.data ?? mkdtempSync(join(tmpdir(), "ibex-srv-"));
  const proc = spawn(SERVER_BIN, ["--port", String(port), "--host", "127.0.0.1", "--data", data, ...(opts.args ?? [])], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
  let stderr = "";
  proc.stderr?.on("data", (b) => (stderr += String(b)));
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`ibex-server exited (${proc.exitCode}): ${stderr}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() - t0 > 15_000) throw new Error(`ibex-server did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    data,
    proc,
    stop: (signal = "SIGTERM") =>
      new Promise((ok) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return ok();
        proc.once("exit", () => ok());
        proc.kill(signal);
      }),
  };
}
