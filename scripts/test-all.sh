#!/usr/bin/env bash
# The one test command (README.md, "Run all tests"). On a fresh Debian machine that
# has only the Rust toolchain it first installs what is missing (the wasm32 target,
# wasm-bindgen-cli at exactly Cargo.lock's wasm-bindgen version, Chromium and
# ChromeDriver, Node.js and the node packages; scripts/services.sh installs moto and
# PostgreSQL), then runs every check: formatting, clippy (native and wasm32), docs,
# vector regeneration, the independent vector check, the native tests against real
# S3 and PostgreSQL servers (the gatekeeper's fault-injection suite included), the
# Prometheus alerting rules' unit tests (promtool), and the browser tests in headless
# Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (native, then wasm32)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p countersign-core --lib --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p countersign-vectors -p countersign-wasm --all-targets --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p countersign-wasm --features admin --all-targets --target wasm32-unknown-unknown -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "test vectors: regenerating must not change a byte"
regenerated=$(mktemp -d)
trap 'rm -rf "$regenerated"' EXIT
cargo run --quiet -p countersign-vectors --bin generate-vectors -- "$regenerated"
for f in "$regenerated"/*.json; do
  cmp "$f" "tests/vectors/$(basename "$f")" || { echo "tests/vectors/$(basename "$f") is stale: run the generator (README)"; exit 1; }
done

step "test vectors: independent implementation (Node's Ed25519)"
node tests/vectors/check-independent.mjs

step "Prometheus alerting rules: check and unit tests (promtool)"
command -v promtool >/dev/null || { echo "promtool is missing: install Debian's prometheus package (scripts/setup.sh does)"; exit 1; }
promtool check rules packaging/prometheus/countersign-alerts.yml
promtool test rules tests/prometheus/countersign-alerts.test.yml

step "native tests, the gatekeeper's fault-injection suite included (moto and a throw-away PostgreSQL, see scripts/services.sh; the faults need root)"
scripts/services.sh cargo test --workspace --features countersign-gatekeeper/fault-suite

export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/tests/webdriver.json"

step "browser tests: the vectors in wasm32 in headless Chromium"
cargo test -p countersign-vectors --target wasm32-unknown-unknown

step "browser tests: the wasm client against a real gatekeeper"
node tests/browser/wasm-client.mjs

step "npm package: build, TypeScript declarations, packaging (plain page, Vite and Node)"
scripts/build-npm.sh
npx tsc --noEmit -p tests/packaging/tsconfig.json
node tests/packaging/run.mjs
node tests/packaging/node.mjs

step "end-to-end: report page, vendor app and gatekeeper in headless Chromium"
cargo build -p countersign-gatekeeper -p countersign-demo -p countersign-vendor
node tests/e2e/run.mjs

step "end-to-end: the audit console served by the gatekeeper, in headless Chromium"
node tests/e2e/console.mjs

step "all checks passed"
