#!/usr/bin/env bash
# Inspects the gatekeeper's Debian package (built by scripts/package-deb.sh) with
# dpkg-deb: control fields, contents and modes, the conffile; runs the packaged binary;
# and checks the packaged systemd unit with `systemd-analyze verify` (any warning
# fails) and prints its `systemd-analyze security` exposure.
# Usage: tests/deb/check.sh PATH.deb
set -uo pipefail
cd "$(dirname "$0")/../.."
deb="${1:?usage: $0 PATH.deb}"
passed=0
failed=0
check() {
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $what"; else failed=$((failed + 1)); echo "FAIL $what"; fi
}
field() { dpkg-deb --field "$deb" "$1"; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

check "Package is countersign-gatekeeper" test "$(field Package)" = countersign-gatekeeper
check "Version is the workspace's ($version-1)" test "$(field Version)" = "$version-1"
check "Architecture is $(dpkg --print-architecture)" test "$(field Architecture)" = "$(dpkg --print-architecture)"
check "Section is net" test "$(field Section)" = net
check "Depends on libc6 and systemd" grep -Eq '^libc6 .*, systemd$' <<<"$(field Depends)"
check "Description names the gatekeeper" grep -q 'Countersign gatekeeper' <<<"$(field Description)"

contents=$(dpkg-deb --contents "$deb")
has() { grep -Eq "^$1 +[^ ]+ +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" <<<"$contents"; }
check "binary /usr/bin/countersign-gatekeeper, mode 755" has '-rwxr-xr-x' usr/bin/countersign-gatekeeper
check "unit /usr/lib/systemd/system/countersign-gatekeeper.service" has '-rw-r--r--' usr/lib/systemd/system/countersign-gatekeeper.service
check "configuration /etc/countersign/gatekeeper.toml" has '-rw-r--r--' etc/countersign/gatekeeper.toml
check "example under /usr/share/doc" has '-rw-r--r--' usr/share/doc/countersign-gatekeeper/examples/gatekeeper.example.toml
check "alerting rules under /usr/share/doc" has '-rw-r--r--' usr/share/doc/countersign-gatekeeper/examples/prometheus/countersign-alerts.yml
check "nothing outside /etc and /usr" test -z "$(grep -Ev ' \./(etc|usr)?/' <<<"$contents")"

control=$(mktemp -d)
root=$(mktemp -d)
trap 'rm -rf "$control" "$root"' EXIT
dpkg-deb --control "$deb" "$control"
check "conffiles lists /etc/countersign/gatekeeper.toml" grep -qx /etc/countersign/gatekeeper.toml "$control/conffiles"
dpkg-deb --extract "$deb" "$root"
bin="$root/usr/bin/countersign-gatekeeper"
check "the packaged binary runs" grep -q "countersign-gatekeeper $version" <<<"$("$bin" --version)"
check "the packaged configuration is the example" cmp -s "$root/etc/countersign/gatekeeper.toml" crates/countersign-gatekeeper/gatekeeper.example.toml

unit="$root/usr/lib/systemd/system/countersign-gatekeeper.service"
for directive in DynamicUser=yes StateDirectory=countersign ProtectSystem=strict NoNewPrivileges=yes \
  ProtectHome=yes PrivateTmp=yes CapabilityBoundingSet= 'ExecReload=/bin/kill -HUP $MAINPID' KillSignal=SIGTERM; do
  check "unit sets $directive" grep -qxF "$directive" "$unit"
done
# verify needs the binaries the unit names to exist: point them at the extracted one.
verify_dir=$(mktemp -d)
sed "s|/usr/bin/countersign-gatekeeper|$bin|" "$unit" > "$verify_dir/countersign-gatekeeper.service"
verify_out=$(cd "$verify_dir" && systemd-analyze verify countersign-gatekeeper.service 2>&1)
verify_rc=$?
check "systemd-analyze verify passes without a warning" test "$verify_rc" -eq 0 -a -z "$verify_out"
[ -n "$verify_out" ] && echo "$verify_out"
exposure=$(cd "$verify_dir" && systemd-analyze security --offline=true countersign-gatekeeper.service 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security exposure: ${exposure:-unknown} (0 = most restricted, 10 = unrestricted)"
check "exposure at most 2.0" awk -v e="${exposure:-10}" 'BEGIN { exit !(e <= 2.0) }'
rm -rf "$verify_dir"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
