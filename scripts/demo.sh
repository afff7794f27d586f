#!/usr/bin/env bash
# Builds everything and serves the todo demo on http://localhost:8080.
# (The sync-server issue replaces this static server with ibex-server.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
echo "[demo] open http://localhost:8080"
exec node scripts/serve.mjs demo/dist "${PORT:-8080}" localhost --spa
