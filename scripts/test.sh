#!/usr/bin/env bash
# Every test suite that exists: Rust (unit, contract, property), the core's
# wasm32 build, the WASM module build, then the TypeScript workspace's own
# tests. Ends with one summary line over every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== Rust tests"
cargo test --workspace 2>&1 | tee "$out"

echo "== ibex-server's sync and security suites again, on PostgreSQL (one private cluster, one database per server's data directory)"
IBEX_TEST_STORE=postgres cargo test -p ibex-server --test sync_server --test security 2>&1 | tee -a "$out"

echo "== ibex-core builds for wasm32-unknown-unknown"
cargo build --target wasm32-unknown-unknown -p ibex-core

echo "== WASM module builds and binds"
bash scripts/build.sh

echo "== ibex-server release build (packed into @ibexdb/server-linux-x64 by its test)"
cargo build --release -p ibex-server

echo "== TypeScript workspace tests"
ts=$(mktemp)
trap 'rm -f "$out" "$ts"' EXIT
# One package at a time (2 cores; Playwright and vitest compete otherwise).
pnpm -r --workspace-concurrency=1 --if-present run test 2>&1 | tee "$ts"

# Counts from the runners' own closing lines (awk never fails on no match).
count() { sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^[A-Za-z0-9@/_.-]* test: //' "$1" | awk -v pat="$2" -v word="$3" '$0 ~ pat { for (i = 2; i <= NF; i++) if ($i ~ "^" word) s += $(i - 1) } END { print s + 0 }'; }
passed=$(count "$out" '^test result:' 'passed')
failed=$(count "$out" '^test result:' 'failed')
# vitest "Tests  12 passed (12)"; Playwright "  2 passed (4.5s)".
ts_passed=$(( $(count "$ts" '^ *Tests +' 'passed') + $(count "$ts" '^ *[0-9]+ passed [(]' 'passed') ))
ts_failed=$(( $(count "$ts" '^ *Tests +' 'failed') + $(count "$ts" '^ *[0-9]+ failed' 'failed') ))
echo "rust: $passed passed, $failed failed; typescript: $ts_passed passed, $ts_failed failed"
echo "summary: $((passed + ts_passed)) passed, $((failed + ts_failed)) failed"
