#!/usr/bin/env bash
# 1 KiB GET and PUT through the gatekeeper (SQLite + local directory) next to Debian's
# nginx (one process) serving the same directory, both loaded by wrk replaying
# pre-signed requests (audit append throughput is `--bench audit_append`). Installs
# nginx and wrk if they are missing (Debian, as root).
#
#   scripts/bench-vs-nginx.sh
#
# Compare another build of the gatekeeper (e.g. the one before a change):
#   COUNTERSIGN_BENCH_GATEKEEPER=path/to/countersign-gatekeeper scripts/bench-vs-nginx.sh
# Other knobs are documented in crates/countersign-gatekeeper/benches/vs_nginx.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench-vs-nginx.sh: installing ${missing[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
exec scripts/services.sh cargo bench -p countersign-gatekeeper --bench vs_nginx
