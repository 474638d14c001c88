#!/usr/bin/env bash
# The fault-injection suite of the gatekeeper (crates/countersign-gatekeeper/tests/faults.rs)
# against real services: kill -9 during uploads, clients that go away at every stage,
# SQLite on a filesystem that fills up or turns immutable, PostgreSQL stopped, S3 frozen
# or unreachable behind a TCP proxy. Needs root (tmpfs, chattr). Prints FAULT-REPORT
# lines with recovery times and requests lost.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/services.sh cargo test -p countersign-gatekeeper --features fault-suite --test faults -- --nocapture "$@"
