#!/usr/bin/env bash
# Builds a statically linked gatekeeper (x86_64 musl, release) that runs on any
# x86_64 Linux without the C library of the build machine, checks that it is static
# and that it starts, and prints its path and size.
# Needs once: rustup target add x86_64-unknown-linux-musl; apt install musl-tools
# (AWS-LC and SQLite are C, compiled with musl-gcc). A release build: minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  echo "the $target target is missing: rustup target add $target" >&2
  exit 1
fi
if ! command -v musl-gcc >/dev/null; then
  echo "musl-gcc is missing: apt install musl-tools" >&2
  exit 1
fi
cargo build --release --locked --target "$target" -p countersign-gatekeeper
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/$target/release/countersign-gatekeeper"
if ! file "$bin" | grep -q "static"; then
  echo "$bin is not statically linked: $(file -b "$bin")" >&2
  exit 1
fi
"$bin" --version >/dev/null
echo "$bin: $(wc -c < "$bin") bytes, $(file -b "$bin" | cut -d, -f1-2), $(file -b "$bin" | grep -o 'static[a-z-]*')"
