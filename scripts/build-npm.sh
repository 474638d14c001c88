#!/usr/bin/env bash
# Builds the npm package's contents into packages/client/pkg/ (the package folder;
# the root package.json is the test harness): the release wasm of countersign-wasm,
# its JavaScript glue and TypeScript declarations (wasm-bindgen --target web), then
# wasm-opt -O from the npm `binaryen` package (Debian's binaryen is too old and breaks
# the module). `npm pack packages/client` then packs exactly what a user installs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --profile wasm-release --target wasm32-unknown-unknown -p countersign-wasm
target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
out=packages/client/pkg
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" --out-name countersign \
  "$target_dir/wasm32-unknown-unknown/wasm-release/countersign_wasm.wasm"
# --strip-*: custom sections no browser reads (~200 B gzip).
node_modules/.bin/wasm-opt -O --strip-producers --strip-target-features \
  --enable-bulk-memory --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-reference-types --enable-multivalue \
  "$out/countersign_bg.wasm" -o "$out/countersign_bg.wasm"
raw=$(wc -c < "$out/countersign_bg.wasm")
gz=$(gzip -9 -c "$out/countersign_bg.wasm" | wc -c)
echo "$out/countersign_bg.wasm: $raw bytes raw, $gz bytes gzipped"
