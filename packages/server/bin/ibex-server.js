#!/usr/bin/env node
// `npx ibex-server …`: runs the prebuilt binary of this platform, installed
// by npm from the matching optional dependency (@ibexdb/server-<os>-<cpu>),
// with the same arguments, output and exit code.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// IBEX_SERVER_PLATFORM pretends to be another platform (to test the message below).
const platform = process.env.IBEX_SERVER_PLATFORM ?? `${process.platform}-${process.arch}`;
const supported = ["linux-x64"];

let binary = process.env.IBEX_SERVER_BINARY;
if (!binary && supported.includes(platform)) {
  try {
    binary = require.resolve(`@ibexdb/server-${platform}/bin/ibex-server`);
  } catch {
    // Not installed (e.g. npm install --no-optional): said below.
  }
}
if (!binary) {
  console.error(
    [
      `ibex-server: no prebuilt binary for ${platform}${supported.includes(platform) ? ` (@ibexdb/server-${platform} is not installed: reinstall without --no-optional)` : ` (prebuilt: ${supported.join(", ")})`}.`,
      "Build it from source with Rust (https://rustup.rs):",
      "  git clone <the Ibex repository> && cd ibex && cargo build --release -p ibex-server",
      "then run target/release/ibex-server, or set IBEX_SERVER_BINARY to its path and run npx ibex-server again.",
    ].join("\n"),
  );
  process.exit(1);
}

const child = spawn(binary, process.argv.slice(2), { stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => {
  if (!signal) process.exit(code ?? 1);
  // End the way the server ended (our own handler would only forward it).
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
});
child.on("error", (e) => {
  console.error(`ibex-server: cannot run ${binary}: ${e.message}`);
  process.exit(1);
});
