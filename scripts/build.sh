#!/usr/bin/env bash
# Builds everything: the WASM module — cargo (the `wasm` profile: release
# tuned for size) → wasm-bindgen (--target web) → wasm-opt -Oz from the npm binaryen
# package (never Debian's, see TOOLCHAIN.md), printing raw and gzip sizes —
# then the TypeScript packages and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
out=packages/db/wasm
cargo build --profile wasm --target wasm32-unknown-unknown -p ibex-wasm
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" --out-name ibex_wasm target/wasm32-unknown-unknown/wasm/ibex_wasm.wasm
./node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  "$out/ibex_wasm_bg.wasm" -o "$out/ibex_wasm_bg.wasm"
raw=$(wc -c < "$out/ibex_wasm_bg.wasm")
gz=$(gzip -9 -c "$out/ibex_wasm_bg.wasm" | wc -c)
echo "[build] ibex_wasm_bg.wasm: $raw bytes raw, $gz bytes gzip"

pnpm --filter @ibexdb/db run build
pnpm --filter @ibexdb/react run build
pnpm --filter @ibexdb/demo run build
