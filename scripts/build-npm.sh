#!/usr/bin/env bash
# Builds the npm package's contents (the root package.json is the test harness): the
# release wasm of countersign-wasm, its JavaScript glue and TypeScript declarations
# (wasm-bindgen --target web), then wasm-opt -O from the npm `binaryen` package
# (Debian's binaryen is too old and breaks the module), in two flavors:
#   packages/client/pkg/    the default flavor, for report pages (`@countersign/client`);
#   packages/client/admin/  the admin flavor, cargo feature `admin`: also AuditRequest,
#                           LogView and verifyLog for the audit console
#                           (`@countersign/client/admin`).
# `npm pack packages/client` then packs exactly what a user installs. Prints each
# flavor's .wasm size; the default flavor must stay within 120,000 bytes gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')

# build_flavor OUT [CARGO FEATURE ARGS...]
build_flavor() {
  local out=$1
  shift
  cargo build --profile wasm-release --target wasm32-unknown-unknown -p countersign-wasm "$@"
  rm -rf "$out"
  wasm-bindgen --target web --out-dir "$out" --out-name countersign \
    "$target_dir/wasm32-unknown-unknown/wasm-release/countersign_wasm.wasm"
  # --strip-*: custom sections no browser reads (~200 B gzip).
  node_modules/.bin/wasm-opt -O --strip-producers --strip-target-features \
    --enable-bulk-memory --enable-mutable-globals --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-reference-types --enable-multivalue \
    "$out/countersign_bg.wasm" -o "$out/countersign_bg.wasm"
  local raw gz
  raw=$(wc -c < "$out/countersign_bg.wasm")
  gz=$(gzip -9 -c "$out/countersign_bg.wasm" | wc -c)
  echo "$out/countersign_bg.wasm: $raw bytes raw, $gz bytes gzipped"
  flavor_gzip=$gz
}

build_flavor packages/client/pkg
default_gzip=$flavor_gzip
build_flavor packages/client/admin --features admin
if [ "$default_gzip" -gt 120000 ]; then
  echo "the default flavor's .wasm is $default_gzip bytes gzipped, over its budget of 120,000" >&2
  exit 1
fi
