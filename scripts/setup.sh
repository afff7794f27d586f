#!/usr/bin/env bash
# Installs what a fresh machine of this kind lacks, and nothing else.
# Idempotent: every step checks first and is skipped when already done.
# Versions and traps: docs/TOOLCHAIN.md.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[setup] $*"; }

PNPM_VERSION=12.21.0

# 1. Rust (provided by rustup on this machine kind) + the WASM target.
if ! command -v cargo >/dev/null; then
  echo "[setup] cargo is missing: install Rust with rustup (https://rustup.rs) and re-run." >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 2. wasm-bindgen-cli, exactly the version of the wasm-bindgen crate in
#    Cargo.lock (the CLI refuses modules from another version). Never with
#    --locked: its lockfile pins a crate the registry no longer serves.
want_wb=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have_wb=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$want_wb" ]; then
  echo "[setup] could not read the wasm-bindgen version from Cargo.lock" >&2
  exit 1
elif [ "$have_wb" != "$want_wb" ]; then
  log "installing wasm-bindgen-cli $want_wb (5-10 minutes on 2 cores, once)"
  cargo install wasm-bindgen-cli --version "$want_wb" --force
fi

# 3. pnpm through npm (corepack fails on this machine kind).
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  log "installing pnpm $PNPM_VERSION"
  npm install -g "pnpm@$PNPM_VERSION"
fi

# 4. Chromium from Debian for the browser tests (Playwright cannot download
#    browsers here). Never Debian's binaryen: its wasm-opt breaks our output.
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium from apt"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

# 5. PostgreSQL from Debian, for the tests of many servers on one database
#    (rust/server/tests/postgres.rs). Only the binaries are used: each test
#    starts its own cluster in a temporary directory (initdb + pg_ctl as
#    the unprivileged user `nobody` when run as root) and stops it; the
#    system service is not needed and not started.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing postgresql from apt"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql
fi

# 6. Workspace dependencies, exactly as locked.
if [ ! -f node_modules/.modules.yaml ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  log "installing workspace dependencies"
  pnpm install --frozen-lockfile
fi
log "ready"
