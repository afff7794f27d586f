#!/usr/bin/env bash
# Builds everything that exists. The todo app and its server arrive with the
# React/demo and sync-server issues; until then the demo is the build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ibex-server
bash scripts/build.sh
./target/release/ibex-server
echo "[demo] the engine and WASM module are built; the todo app is not implemented yet."
