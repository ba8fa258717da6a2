#!/usr/bin/env bash
# Checks systemd/camclassd.service offline: `systemd-analyze verify` finds nothing to say, and
# `systemd-analyze security --offline=true` rates the exposure at most MAX_EXPOSURE (2.0, "OK"),
# for the unit alone (BPU) and with the OpenVINO drop-in; the same for the template
# systemd/camclassd@.service (instance camclassd@front.service), which also must give each
# instance its own config, socket and log.
#   Tests/systemd/check-unit.sh [CAMCLASSD_BINARY]
#   Tests/systemd/check-unit.sh --mqtt [CAMCLASS_BINARY]
# The binary stands in for /usr/bin/camclassd (verify checks that ExecStart is executable).
# --mqtt checks systemd/camclass-mqtt.service instead (the MQTT bridge, `camclass mqtt`): verify,
# exposure at most MQTT_MAX_EXPOSURE (2.5: it needs the network), and its own user in group camclassd.
# Fails — never skips — when systemd-analyze is missing (`apt-get install systemd`).
# Last line: "N passed, M failed".
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
mqtt=no
if [ "${1:-}" = --mqtt ]; then mqtt=yes; shift; fi
binary=${1:-$repo/.build/debug/camclassd}
[ $mqtt = yes ] && binary=${1:-$repo/.build/debug/camclass}
max=${MAX_EXPOSURE:-2.0}
passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; exit $?; }

if ! command -v systemd-analyze >/dev/null; then
    fail "systemd-analyze not found: apt-get install systemd (make test-deps)"
    finish
fi
if [ ! -x "$binary" ]; then
    fail "binary '$binary' not found: swift build --product $([ $mqtt = yes ] && echo camclass || echo camclassd)"
    finish
fi

if [ $mqtt = yes ]; then
    max=${MQTT_MAX_EXPOSURE:-2.5}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    unit=$tmp/camclass-mqtt.service
    sed "s|^ExecStart=/usr/bin/camclass |ExecStart=$binary |" "$repo/systemd/camclass-mqtt.service" > "$unit"
    out=$(systemd-analyze verify --man=no "$unit" 2>&1); rc=$?
    if [ $rc = 0 ] && [ -z "$out" ]; then pass "systemd-analyze verify (camclass-mqtt)"; else fail "systemd-analyze verify (camclass-mqtt): rc=$rc $out"; fi
    s=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for camclass-mqtt.service: \([0-9.]*\).*/\1/p')
    if [ -z "$s" ]; then fail "security score (camclass-mqtt): no score in systemd-analyze's output"
    elif awk -v s="$s" -v m="$max" 'BEGIN { exit !(s <= m) }'; then pass "security exposure (camclass-mqtt) $s <= $max"
    else fail "security exposure (camclass-mqtt) $s > $max"; fi
    # Its own unprivileged user, able to reach the daemon's socket (group camclassd) and the network only.
    if grep -qx 'DynamicUser=yes' "$unit" && grep -qx 'User=camclass-mqtt' "$unit" && grep -qx 'SupplementaryGroups=camclassd' "$unit"; then
        pass "own user camclass-mqtt in group camclassd"
    else fail "camclass-mqtt must run as its own user in group camclassd"; fi
    if grep -qx 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' "$unit" && ! grep -q '^PrivateNetwork=yes' "$unit"; then
        pass "network allowed (AF_UNIX, AF_INET, AF_INET6 only)"
    else fail "camclass-mqtt needs AF_UNIX AF_INET AF_INET6 and nothing else"; fi
    finish
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A root with the unit where the package puts it, ExecStart pointing at the built binary.
unitdir=$tmp/root/lib/systemd/system
mkdir -p "$unitdir/camclassd.service.d"
sed "s|^ExecStart=/usr/bin/camclassd|ExecStart=$binary|" "$repo/systemd/camclassd.service" > "$unitdir/camclassd.service"
cp "$repo/systemd/camclassd.service.d/openvino.conf" "$unitdir/camclassd.service.d/"
mkdir -p "$tmp/alone"
cp "$unitdir/camclassd.service" "$tmp/alone/"

out=$(systemd-analyze verify --man=no "$tmp/alone/camclassd.service" 2>&1); rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then pass "systemd-analyze verify (unit)"; else fail "systemd-analyze verify (unit): rc=$rc $out"; fi
out=$(systemd-analyze verify --man=no "$unitdir/camclassd.service" 2>&1); rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then pass "systemd-analyze verify (unit + openvino.conf)"; else fail "systemd-analyze verify (unit + openvino.conf): rc=$rc $out"; fi

score() {  # score UNIT ARGS...: prints the overall exposure of UNIT, e.g. 0.6
    local unit=$1; shift
    systemd-analyze security --offline=true "$@" 2>&1 | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p"
}
check_score() {
    local what=$1 unit=$2; shift 2
    local s; s=$(score "$unit" "$@")
    if [ -z "$s" ]; then fail "security score ($what): no score in systemd-analyze's output"; return; fi
    if awk -v s="$s" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
        pass "security exposure ($what) $s <= $max"
    else
        fail "security exposure ($what) $s > $max"
    fi
}
check_score "unit alone, MemoryDenyWriteExecute=yes" camclassd.service "$tmp/alone/camclassd.service"
check_score "with the OpenVINO drop-in" camclassd.service --root="$tmp/root" camclassd.service
# The drop-in must actually be what lifts MemoryDenyWriteExecute (and nothing else).
report=$(systemd-analyze security --offline=true --root="$tmp/root" camclassd.service 2>&1)
if grep -q "✗ MemoryDenyWriteExecute=" <<<"$report"; then
    pass "the OpenVINO drop-in allows W+X memory"
else
    fail "the OpenVINO drop-in does not take effect"
fi

# The template, as the instance camclassd@front.service (verify loads the template for it).
mkdir -p "$unitdir/camclassd@.service.d" "$tmp/alone-template"
sed "s|^ExecStart=/usr/bin/camclassd|ExecStart=$binary|" "$repo/systemd/camclassd@.service" > "$unitdir/camclassd@.service"
cp "$repo/systemd/camclassd@.service.d/openvino.conf" "$unitdir/camclassd@.service.d/"
cp "$unitdir/camclassd@.service" "$tmp/alone-template/"
out=$(systemd-analyze verify --man=no "$tmp/alone-template/camclassd@front.service" 2>&1); rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then pass "systemd-analyze verify (template)"; else fail "systemd-analyze verify (template): rc=$rc $out"; fi
out=$(systemd-analyze verify --man=no "$unitdir/camclassd@front.service" 2>&1); rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then pass "systemd-analyze verify (template + openvino.conf)"; else fail "systemd-analyze verify (template + openvino.conf): rc=$rc $out"; fi
check_score "template alone" camclassd@front.service "$tmp/alone-template/camclassd@front.service"
check_score "template with the OpenVINO drop-in" camclassd@front.service --root="$tmp/root" camclassd@front.service
report=$(systemd-analyze security --offline=true --root="$tmp/root" camclassd@front.service 2>&1)
if grep -q "✗ MemoryDenyWriteExecute=" <<<"$report"; then
    pass "the template's OpenVINO drop-in allows W+X memory"
else
    fail "the template's OpenVINO drop-in does not take effect"
fi
# Each instance: its own config, socket and log; the shared runtime directory survives one stopping.
t=$repo/systemd/camclassd@.service
if grep -qx 'ExecStart=/usr/bin/camclassd --config /etc/camclassd/%i.yaml --socket /run/camclassd/%i.sock --log /var/log/camclassd/%i/classifications.log' "$t" \
   && grep -qx 'LogsDirectory=camclassd/%i' "$t" && grep -qx 'RuntimeDirectory=camclassd' "$t" && grep -qx 'RuntimeDirectoryPreserve=yes' "$t"; then
    pass "template: per-instance config, socket and log"
else
    fail "template: ExecStart must pass --config /etc/camclassd/%i.yaml, --socket /run/camclassd/%i.sock and --log under LogsDirectory=camclassd/%i, with RuntimeDirectoryPreserve=yes"
fi
finish
