#!/usr/bin/env bash
# Builds everything and runs ibex-server with the todo demo on
# http://localhost:8080 (data in ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cargo build --release -p ibex-server
echo "[demo] open http://localhost:8080"
exec ./target/release/ibex-server --port "${PORT:-8080}" --data ./data --static demo/dist
