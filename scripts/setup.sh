#!/usr/bin/env bash
# Installs what building, testing and the demo need and is not yet on the machine (a
# fresh Debian machine with only the Rust toolchain): the wasm32 target, rustfmt and
# clippy, Chromium and ChromeDriver, Node.js, Python 3 and promtool (Debian's prometheus package,
# for the alerting rules' tests) from apt (as root, or through sudo),
# wasm-bindgen-cli at exactly Cargo.lock's wasm-bindgen version, and the node packages.
# Safe to run again; it skips what is present. (moto and PostgreSQL, needed only by the
# tests, are installed by scripts/services.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "Rust components: wasm32 target, rustfmt, clippy"
rustup target add wasm32-unknown-unknown
rustup component add rustfmt clippy

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# The test services (scripts/services.sh), and tests/support/sqlite.mjs: the browser
# and console tests read and rewrite a gatekeeper's SQLite file with Python's sqlite3.
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  step "apt: ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

if ! command -v promtool >/dev/null; then
  step "apt: prometheus (for promtool)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
  # Only promtool is wanted: on a machine running systemd the package also starts a
  # Prometheus server (port 9090), which is stopped and disabled again.
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus 2>/dev/null || true
  fi
fi

wasm_bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wasm_bindgen_version" ]; then
  step "wasm-bindgen-cli $wasm_bindgen_version (matches Cargo.lock)"
  # No --locked: the CLI's own lockfile pins a crate version the registry lacks.
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_version"
fi

step "node packages"
npm ci --no-audit --no-fund

