#!/usr/bin/env bash
# The one-command demo (README.md): installs what is missing (scripts/setup.sh), builds
# the gatekeeper, the demo vendor app, the `countersign` CLI and the npm package, then
# on 127.0.0.1
#   1. makes a vendor signing key and the gatekeeper's config (`countersign-demo
#      gatekeeper-config`: local bucket directory + SQLite in a fresh data dir),
#   2. starts the gatekeeper and seeds the sample helpdesk reports through it
#      (`countersign put`, signed with the vendor key),
#   3. starts the demo vendor app serving www/ and the npm package (packages/client/pkg/),
#   4. registers a customer-admin key for the gatekeeper's audit console (`/audit/`, served
#      with the package's admin flavor, packages/client/admin/),
# and prints the URLs, the demo users and their TOTP codes, and the console's key file.
# Ctrl-C stops everything.
#
#   scripts/demo.sh            (or: npm run demo)
#   DEMO_APP_PORT=18080 DEMO_GK_PORT=18443 scripts/demo.sh     fixed ports
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

step() { printf '\n==> %s\n' "$*"; }
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

scripts/setup.sh
step "building the gatekeeper, the demo vendor app and the countersign CLI"
cargo build -p countersign-gatekeeper -p countersign-demo -p countersign-vendor --bins
step "building the npm package into packages/client/pkg/"
scripts/build-npm.sh

target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
bin=$target_dir/debug
data=$target_dir/demo
rm -rf "$data"
mkdir -p "$data"
app_port=${DEMO_APP_PORT:-$(free_port)}
gk_port=${DEMO_GK_PORT:-$(free_port)}
app_url=http://127.0.0.1:$app_port
gk_url=http://127.0.0.1:$gk_port

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; the demo's data is in $data"
}
trap stop EXIT
trap 'exit 130' INT TERM

wait_for() { # URL PID
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "the server for $1 exited; see $data/*.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$1 did not come up; see $data/*.log" >&2
  return 1
}

step "vendor key, audit console key and configuration in $data"
"$bin/countersign" keygen --key-id vendor-demo --out "$data/vendor-demo.key" >/dev/null
"$bin/countersign" keygen --key-id console-admin --role customer-admin --out "$data/console-admin.key" >/dev/null
admin_public=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).public_key)' "$data/console-admin.key.pub")
node -e '
  const fs = require("fs");
  const c = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  c.gatekeeper_url = process.argv[2];
  fs.writeFileSync(process.argv[3], JSON.stringify(c, null, 2));
' crates/countersign-demo/demo-config.json "$gk_url" "$data/demo-config.json"
"$bin/countersign-demo" gatekeeper-config --config "$data/demo-config.json" \
  --vendor-key "$data/vendor-demo.key.pub" --data-dir "$data/gatekeeper" --origin "$app_url" > "$data/gatekeeper.toml"
# The customer's own rule for the helpdesk import that seeds the sample reports.
cat >> "$data/gatekeeper.toml" <<EOF

# Sample reports imported by the vendor's helpdesk tool (scripts/demo.sh).
[[acl]]
effect = "allow"
subjects = ["helpdesk-import"]
buckets = ["local"]
prefix = ""
operations = ["PUT"]

# The audit console (/audit/) and the customer-admin key it signs with.
[thresholds]
AUDIT = { customer-admin = 1 }

[[keys]]
key_id = "console-admin"
role = "customer-admin"
public_key = "$admin_public"

[console]
client_dir = "$repo/packages/client/admin"
EOF

step "starting the gatekeeper on $gk_url"
"$bin/countersign-gatekeeper" serve --config "$data/gatekeeper.toml" --listen "127.0.0.1:$gk_port" > "$data/gatekeeper.log" 2>&1 &
pids+=($!)
wait_for "$gk_url/healthz" "${pids[-1]}"
curl -sf "$gk_url/v1/keys" > "$data/gatekeeper-keys.json"

step "seeding the sample reports through the gatekeeper"
node scripts/sample-report.mjs "$data/samples" | while IFS=$'\t' read -r key type size; do
  "$bin/countersign" put --no-progress --gatekeeper "$gk_url" --gatekeeper-key "$data/gatekeeper-keys.json" \
    --signing-key "$data/vendor-demo.key" --audience local --bucket local --subject helpdesk-import \
    --object "$key" --content-type "$type" "$data/samples/$key" >/dev/null
  echo "  put $key ($type, $size)"
done

step "starting the demo vendor app on $app_url"
"$bin/countersign-demo" serve --config "$data/demo-config.json" --listen "127.0.0.1:$app_port" \
  --signing-key "$data/vendor-demo.key" --gatekeeper-key "$data/gatekeeper-keys.json" \
  --www "$repo/www" --pkg "$repo/packages/client/pkg" > "$data/vendor.log" 2>&1 &
pids+=($!)
wait_for "$app_url/api/config" "${pids[-1]}"

secret() { node -e 'const c=require(process.argv[1]);console.log(c.users.find(u=>u.username===process.argv[2]).totp_secret)' "$data/demo-config.json" "$1"; }
alice=$(secret alice)
bob=$(secret bob)
cat <<EOF

Countersign demo is running.

  Report page:  $app_url/
  Gatekeeper:   $gk_url   (bucket directory: $data/gatekeeper/buckets/local)
  Audit console: $gk_url/audit/
                sign in with "Import a key file": $data/console-admin.key
                (role customer-admin, registered in $data/gatekeeper.toml)

  Log in as     alice / alice-demo-password   (Acme Clinic: read and upload)
          or    bob   / bob-demo-password     (Bravo Dental: read only)
  TOTP code:    $bin/countersign-demo totp-code --secret $alice   (alice, now: $("$bin/countersign-demo" totp-code --secret "$alice"))
                $bin/countersign-demo totp-code --secret $bob   (bob, now: $("$bin/countersign-demo" totp-code --secret "$bob"))
                (a code works once; wait for the next one to log in again)

  Vendor byte counters: $app_url/api/stats   Logs: $data/*.log
  Press Ctrl-C to stop.
EOF
wait -n "${pids[@]}" || true
echo "a server exited; see $data/*.log" >&2
