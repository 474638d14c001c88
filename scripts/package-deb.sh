#!/usr/bin/env bash
# Builds the gatekeeper's Debian package with cargo-deb (`cargo install cargo-deb`)
# and prints its path. The package holds the binary (/usr/bin), the hardened systemd
# unit (installed, not enabled), the example configuration as the conffile
# /etc/countersign/gatekeeper.toml, and a copy under /usr/share/doc; systemd creates
# the data directory /var/lib/countersign (StateDirectory) for its dynamic user.
# Usage: scripts/package-deb.sh [--output DIR]   (a release build: minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--output DIR]" >&2; exit 2 ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2
  exit 1
fi
mkdir -p "$out"
# cargo-deb prints the package's path on its last line.
cargo deb -p countersign-gatekeeper --output "$out" | tail -n 1
