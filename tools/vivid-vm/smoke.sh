#!/usr/bin/env bash
# Smoke test of the vivid VM harness.
#
# Usage: tools/vivid-vm/smoke.sh [--cache DIR] [--timeout SEC]
#
# Boots the VM through run.sh and, inside it: v4l2-ctl --all on /dev/video0;
# streams 20 NV12 640x480 frames (and checks their byte count); unplugs
# (vm-ctl unplug = rmmod) and checks /dev/video0 is gone; replugs and checks
# it is back; streams again; then a hot unplug while streaming (vm-ctl
# unbind), bind, and a last stream. Prints PASS or FAIL; exit 0 on PASS.
# Run tools/vivid-vm/setup.sh first.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------- guest side --
if [ "${1:-}" = --inside ]; then
    RESULT="$VM_SHARE/smoke.result"
    : >"$RESULT"
    FAILED=0
    step() { echo; echo "=== $*"; }
    ok() { echo "ok: $*"; echo "ok: $*" >>"$RESULT"; }
    bad() { echo "FAIL: $*"; echo "FAIL: $*" >>"$RESULT"; FAILED=1; }
    now() { cut -d' ' -f1 /proc/uptime; }

    FRAME=$((640 * 480 * 3 / 2))   # NV12
    stream20() { # label
        local out=/tmp/frames.nv12 t0 t1 size
        rm -f "$out"
        t0=$(now)
        if v4l2-ctl -d /dev/video0 --set-fmt-video=width=640,height=480,pixelformat=NV12 \
                --stream-mmap --stream-count=20 --stream-to="$out"; then
            t1=$(now)
            size=$(stat -c %s "$out" 2>/dev/null || echo 0)
            if [ "$size" -eq $((20 * FRAME)) ]; then
                ok "$1: streamed 20 NV12 640x480 frames ($size bytes, $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s)"
            else
                bad "$1: got $size bytes, expected $((20 * FRAME))"
            fi
        else
            bad "$1: v4l2-ctl streaming failed"
        fi
        if v4l2-ctl -d /dev/video0 --get-fmt-video | grep -q "NV12"; then
            ok "$1: format reads back as NV12"
        else
            bad "$1: format is not NV12: $(v4l2-ctl -d /dev/video0 --get-fmt-video | tr '\n' ' ')"
        fi
    }

    step "v4l2-ctl --all -d /dev/video0"
    if out=$(v4l2-ctl --all -d /dev/video0 2>&1); then
        echo "$out" | head -n 40
        echo "... ($(echo "$out" | wc -l) lines in all)"
        if echo "$out" | grep -q "Driver name *: vivid"; then ok "v4l2-ctl --all: driver vivid"
        else bad "v4l2-ctl --all: driver is not vivid"; fi
    else
        echo "$out"; bad "v4l2-ctl --all failed"
    fi

    step "stream (1)"
    stream20 "stream 1"

    step "unplug (vm-ctl unplug)"
    t0=$(now)
    if vm-ctl unplug; then
        if [ -e /dev/video0 ]; then bad "unplug: /dev/video0 still exists"
        else ok "unplug: /dev/video0 gone ($(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')s)"; fi
    else
        bad "vm-ctl unplug failed"
    fi
    if v4l2-ctl -d /dev/video0 --all >/dev/null 2>&1; then bad "v4l2-ctl works on an unplugged camera"
    else ok "v4l2-ctl fails while unplugged"; fi

    step "replug (vm-ctl replug)"
    t0=$(now)
    if vm-ctl replug; then
        if [ -c /dev/video0 ]; then ok "replug: /dev/video0 back ($(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')s)"
        else bad "replug: /dev/video0 missing"; fi
    else
        bad "vm-ctl replug failed"
    fi

    step "stream (2, after replug)"
    stream20 "stream 2"

    step "hot unplug while streaming (vm-ctl unbind), then bind"
    v4l2-ctl -d /dev/video0 --stream-mmap --stream-count=100000 >/tmp/long.log 2>&1 &
    spid=$!
    sleep 2
    if vm-ctl unbind; then
        if [ -e /dev/video0 ]; then bad "unbind: /dev/video0 still exists"
        else ok "unbind: /dev/video0 gone while streaming"; fi
    else
        bad "vm-ctl unbind failed"
    fi
    # The streamer must notice the loss and stop (not hang).
    for _ in $(seq 1 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$spid" 2>/dev/null; then
        bad "streamer still running 10 s after unbind"; kill "$spid"
    else
        ok "streamer stopped after unbind ($(grep -o 'VIDIOC_[A-Z]*: failed: .*' /tmp/long.log | head -n1))"
    fi
    wait "$spid" 2>/dev/null
    if vm-ctl bind >/dev/null && [ -c /dev/video0 ]; then ok "bind: /dev/video0 back"
    else bad "bind: /dev/video0 did not come back"; fi

    step "stream (3, after bind)"
    stream20 "stream 3"

    echo
    [ "$FAILED" = 0 ] && echo "guest: all steps passed" || echo "guest: some steps FAILED"
    exit "$FAILED"
fi

# ----------------------------------------------------------------- host side --
RUN_ARGS=()
TIMEOUT=300
while [ $# -gt 0 ]; do
    case "$1" in
        --cache) RUN_ARGS+=(--cache "$2"); shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "smoke: unknown argument $1" >&2; exit 2 ;;
    esac
done

SHARE="$(mktemp -d "${TMPDIR:-/tmp}/vivid-vm-smoke.XXXXXX")" || { echo "smoke: FAIL (mktemp)"; exit 1; }
trap 'rm -rf "$SHARE"' EXIT
START=$(date +%s.%N)
"$HERE/run.sh" "${RUN_ARGS[@]}" --timeout "$TIMEOUT" --share "$SHARE" \
    --vivid-opts n_devs=1,node_types=0x1 -- bash "$HERE/smoke.sh" --inside
RC=$?
ELAPSED=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
BOOT=$(sed -n 's/.*vivid-vm: \[\([0-9.]*\)s\] \/dev\/video0 is present.*/\1/p' "$SHARE/console.log" 2>/dev/null | head -n1)

echo
echo "---- smoke summary"
[ -f "$SHARE/smoke.result" ] && cat "$SHARE/smoke.result"
NOK=$(grep -c '^ok:' "$SHARE/smoke.result" 2>/dev/null || true)
NFAIL=$(grep -c '^FAIL:' "$SHARE/smoke.result" 2>/dev/null || true)
echo "timing: whole run ${ELAPSED}s, /dev/video0 at ${BOOT:-?}s guest uptime"
if [ "$RC" = 0 ] && [ "${NFAIL:-0}" = 0 ] && [ "${NOK:-0}" -gt 0 ]; then
    echo "smoke: ${NOK} passed, 0 failed"
    echo "vivid-vm smoke: PASS"
    exit 0
fi
echo "smoke: ${NOK:-0} passed, ${NFAIL:-0} failed (run.sh exit $RC)"
echo "vivid-vm smoke: FAIL"
exit 1
