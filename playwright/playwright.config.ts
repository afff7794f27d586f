import { tmpdir } from "node:os";

import { defineConfig } from "@playwright/test";

// Ports are chosen once per run (the config is evaluated again in every
// test worker, which inherits the environment), so two runs on one machine
// never collide.
process.env.IBEX_SDK_PORT ??= String(20_000 + Math.floor(Math.random() * 20_000));
process.env.IBEX_DEMO_PORT ??= String(Number(process.env.IBEX_SDK_PORT) + 1);
// The demo server's stdout (login links of the development verifier).
process.env.IBEX_DEMO_LOG ??= `${tmpdir()}/ibex-demo-${process.env.IBEX_DEMO_PORT}.log`;
const port = Number(process.env.IBEX_SDK_PORT);
const demoPort = Number(process.env.IBEX_DEMO_PORT);

export default defineConfig({
  testDir: "tests",
  timeout: 60_000,
  fullyParallel: false,
  workers: 1,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    browserName: "chromium",
    launchOptions: {
      // Browsers cannot be downloaded here: Debian's Chromium (TOOLCHAIN.md).
      executablePath: "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    },
  },
  webServer: [
    {
      // The repository root: the SDK test page imports the built package.
      command: `node ../scripts/serve.mjs .. ${port}`,
      url: `http://127.0.0.1:${port}/playwright/pages/sdk.html`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      // The demo served by ibex-server itself (built by `cargo test`), with
      // a fresh data directory; each test uses its own list (?list=).
      command: `bash -c 'd=$(mktemp -d); exec ../target/debug/ibex-server --port ${demoPort} --host 127.0.0.1 --data "$d" --static ../demo/dist > "${process.env.IBEX_DEMO_LOG}"'`,
      url: `http://127.0.0.1:${demoPort}/healthz`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
  ],
});
