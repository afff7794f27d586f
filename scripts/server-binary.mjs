// Copies the release ibex-server into a platform package before it is
// packed (its "prepack"): `node scripts/server-binary.mjs <destination>`.
// The binary is built by `cargo build --release -p ibex-server`; packing
// without it fails with that command rather than shipping nothing.
import { chmodSync, copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const built = resolve(root, "target/release/ibex-server");
const dest = resolve(process.argv[2] ?? "bin/ibex-server");
if (!existsSync(built)) {
  console.error(`ibex-server is not built: run \`cargo build --release -p ibex-server\` in ${root} first`);
  process.exit(1);
}
mkdirSync(dirname(dest), { recursive: true });
copyFileSync(built, dest);
chmodSync(dest, 0o755);
