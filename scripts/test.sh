#!/usr/bin/env bash
# Every test suite that exists: Rust (unit, contract, property), the core's
# wasm32 build, the WASM module build, then the TypeScript workspace's own
# tests. Ends with one summary line over all Rust test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== Rust tests"
cargo test --workspace 2>&1 | tee "$out"

echo "== ibex-core builds for wasm32-unknown-unknown"
cargo build --target wasm32-unknown-unknown -p ibex-core

echo "== WASM module builds and binds"
bash scripts/build.sh

echo "== TypeScript workspace tests"
pnpm -r --if-present run test

passed=$(grep -oE '^test result: [a-z]+\. [0-9]+ passed' "$out" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '; [0-9]+ failed' "$out" | awk '{s += $2} END {print s + 0}')
echo "summary: $passed passed, $failed failed"
