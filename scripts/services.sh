#!/usr/bin/env bash
# Starts the real backends the gatekeeper's tests need, runs a command, stops them.
#
#   scripts/services.sh cargo test -p countersign-gatekeeper
#
# - moto (an S3-compatible server, from PyPI) on 127.0.0.1:<free port>
# - a throw-away PostgreSQL cluster (Debian's postgresql) on 127.0.0.1:<free port>,
#   run as the `postgres` user because PostgreSQL refuses to run as root
# Installs whatever is missing (as root, on Debian). Exports
# COUNTERSIGN_TEST_S3_ENDPOINT and COUNTERSIGN_TEST_PG_URL (and, for tests that stop
# and restart PostgreSQL, COUNTERSIGN_TEST_PG_BIN, _PG_DATA, _PG_PORT and
# _PG_SOCKET_DIR) and sets
# COUNTERSIGN_REQUIRE_SERVICES=1, so backend tests fail instead of skipping.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

log() { echo "services.sh: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# --- install what is missing ---------------------------------------------------
if ! command -v moto_server >/dev/null 2>&1; then
  log "installing moto[server] from PyPI"
  python3 -m pip install --quiet 'moto[server]' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]'
  hash -r
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  log "installing postgresql from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi

WORK=$(mktemp -d /tmp/countersign-services.XXXXXX)
MOTO_PID=""
PG_STARTED=""
cleanup() {
  local status=$?
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ -n "$PG_STARTED" ]; then
    su postgres -s /bin/sh -c "'$PG_BIN/pg_ctl' -D '$WORK/pg/data' -m immediate -w stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM

# --- moto ---------------------------------------------------------------------
S3_PORT=$(free_port)
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
if ! wait_for_port "$S3_PORT" 60; then
  log "moto did not start:"; cat "$WORK/moto.log" >&2; exit 1
fi

# --- PostgreSQL ---------------------------------------------------------------
PG_PORT=$(free_port)
mkdir -p "$WORK/pg"
chown postgres "$WORK" "$WORK/pg"
chmod 755 "$WORK"
su postgres -s /bin/sh -c "'$PG_BIN/initdb' -D '$WORK/pg/data' -U postgres -A trust -E UTF8 --locale=C.UTF-8" >"$WORK/initdb.log" 2>&1 \
  || { log "initdb failed:"; cat "$WORK/initdb.log" >&2; exit 1; }
su postgres -s /bin/sh -c "'$PG_BIN/pg_ctl' -D '$WORK/pg/data' -l '$WORK/pg/server.log' -w -o \"-p $PG_PORT -k '$WORK/pg' -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off\" start" >/dev/null \
  || { log "postgres did not start:"; cat "$WORK/pg/server.log" >&2; exit 1; }
PG_STARTED=1

export COUNTERSIGN_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export COUNTERSIGN_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export COUNTERSIGN_REQUIRE_SERVICES=1
# For tests that stop and restart PostgreSQL (as the `postgres` user). The fault suite
# starts a cluster of its own with these programs, so the shared one stays up.
export COUNTERSIGN_TEST_PG_BIN="$PG_BIN"
export COUNTERSIGN_TEST_PG_DATA="$WORK/pg/data"
export COUNTERSIGN_TEST_PG_PORT="$PG_PORT"
export COUNTERSIGN_TEST_PG_SOCKET_DIR="$WORK/pg"
log "moto at $COUNTERSIGN_TEST_S3_ENDPOINT, PostgreSQL at $COUNTERSIGN_TEST_PG_URL"

"$@"
