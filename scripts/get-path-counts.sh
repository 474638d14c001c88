#!/usr/bin/env bash
# What one large GET costs the gatekeeper process, counted rather than timed: system
# calls by kind, context switches and CPU time per MiB, from `perf stat` attached to
# the running gatekeeper for the length of one `countersign get`, and the CPU time of
# its busiest thread (how much of the GET's work one thread carries). Encrypted and
# unencrypted buckets side by side, on a local directory and, when
# COUNTERSIGN_TEST_S3_ENDPOINT is set (run it under scripts/services.sh), on S3.
#
#   scripts/services.sh scripts/get-path-counts.sh [MiB]      (default 256)
#
# GK_BIN and CLI_BIN name the gatekeeper and `countersign` binaries to measure
# (default: the release builds in $CARGO_TARGET_DIR or target/), so two builds can be
# counted back to back. Needs `perf` and permission to attach to the process.
set -euo pipefail
mib=${1:-256}
target=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
gk=${GK_BIN:-$target/release/countersign-gatekeeper}
cli=${CLI_BIN:-$target/release/countersign}
s3=${COUNTERSIGN_TEST_S3_ENDPOINT:-}

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$cli" keygen --key-id v1 --out "$work/v1.key" >/dev/null
public=$(sed -n 's/.*"public_key": "\(.*\)".*/\1/p' "$work/v1.key.pub")
buckets=(lenc lplain)
[ -n "$s3" ] && buckets+=(senc splain)
{
  cat <<EOF
gatekeeper_id = "gk-counts"

[limits]
max_object_bytes = 17179869184
storage_timeout_ms = 120000

[[keys]]
key_id = "v1"
role = "vendor"
public_key = "$public"

[thresholds]
GET = { vendor = 1 }
HEAD = { vendor = 1 }
LIST = { vendor = 1 }
PUT = { vendor = 1 }

[[acl]]
effect = "allow"
subjects = ["*"]
operations = ["GET", "HEAD", "PUT", "LIST"]
EOF
  for b in "${buckets[@]}"; do
    printf '\n[buckets.%s]\n' "$b"
    case $b in
      l*) printf 'store = "local"\npath = "%s"\n' "$work/$b" ;;
      s*)
        name="counts-$b-$$-$RANDOM"
        curl -sf -X PUT "$s3/$name" >/dev/null
        printf 'store = "s3"\nendpoint = "%s"\nregion = "us-east-1"\ns3_bucket = "%s"\n' "$s3" "$name"
        printf 'access_key_id = "testing"\nsecret_access_key = "testing"\nallow_http = true\n'
        ;;
    esac
    case $b in *plain) echo 'encryption = { enabled = false }' ;; esac
  done
} > "$work/gatekeeper.toml"

"$gk" serve --config "$work/gatekeeper.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
  2> "$work/gatekeeper.log" &
pid=$!
url=
for _ in $(seq 1 200); do
  url=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$work/gatekeeper.log" | head -1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/gatekeeper.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the gatekeeper did not start" >&2; exit 1; }
curl -sf "$url/v1/keys" > "$work/keys.json"
head -c $((mib << 20)) /dev/urandom > "$work/object"

events=task-clock,context-switches
calls=(read pread64 readv recvfrom recvmsg write writev sendto sendmsg epoll_wait futex mmap munmap madvise)
for c in "${calls[@]}"; do events+=",syscalls:sys_enter_$c"; done

cli_args() { # BUCKET
  echo --no-progress --gatekeeper "$url" --gatekeeper-key "$work/keys.json" \
    --signing-key "$work/v1.key" --audience gk-counts --bucket "$1" --subject bench --object big
}

printf '%s MiB GET, per MiB, gatekeeper process (%s)\n' "$mib" "$gk"
printf '%-7s %8s %8s %8s' bucket "CPU ms" busiest ctxsw
for c in "${calls[@]}"; do printf ' %8.8s' "$c"; done
echo
for b in "${buckets[@]}"; do
  # shellcheck disable=SC2046
  "$cli" put $(cli_args "$b") "$work/object" >/dev/null
  # A first GET starts the runtime's blocking threads, which perf then follows.
  # shellcheck disable=SC2046
  "$cli" get $(cli_args "$b") --out "$work/out" --force >/dev/null
  # shellcheck disable=SC2046
  perf stat --per-thread -p "$pid" -x, -o "$work/stat" -e "$events" -- \
    "$cli" get $(cli_args "$b") --out "$work/out" --force >/dev/null
  cmp -s "$work/object" "$work/out" || { echo "$b: the GET returned other bytes" >&2; exit 1; }
  # One line per thread: `name-tid,value,unit,event,...`; a thread that did not run
  # says `<not counted>`.
  count() { awk -F, -v e="$1" '$4 == e && $2 + 0 == $2 { n += $2 } END { print n + 0 }' "$work/stat"; }
  busiest=$(awk -F, '$4 == "task-clock" && $2 + 0 == $2 && $2 > m { m = $2 } END { print m + 0 }' "$work/stat")
  printf '%-7s %8.3f %8.3f %8.1f' "$b" "$(echo "$(count task-clock) / $mib" | bc -l)" \
    "$(echo "$busiest / $mib" | bc -l)" "$(echo "$(count context-switches) / $mib" | bc -l)"
  for c in "${calls[@]}"; do
    printf ' %8.1f' "$(echo "$(count "syscalls:sys_enter_$c") / $mib" | bc -l)"
  done
  echo
  rm -f "$work/out"
done
