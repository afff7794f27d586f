#!/usr/bin/env bash
# Every test suite that exists: Rust (unit, contract, property), the core's
# wasm32 build, then the TypeScript workspace's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust tests"
cargo test --workspace

echo "== ibex-core builds for wasm32-unknown-unknown"
cargo build --target wasm32-unknown-unknown -p ibex-core

echo "== WASM module builds and binds"
bash scripts/build.sh

echo "== TypeScript workspace tests"
pnpm -r --if-present run test
