#!/usr/bin/env bash
# The camera integration test on a real kernel driver (`make test-camera`; `make test` runs it too).
#
# Boots Debian's kernel with the vivid camera driver in qemu (tools/vivid-vm), runs the release
# camclassd and camclass inside against /dev/video0 (Tests/Camera/vm-scenario.sh), then checks the
# records, events and logs it left (Tests/Camera/check_results.py). The last line is
# "camera test: N passed, M failed"; the exit status is non-zero on any failure, including a VM
# that cannot be set up or started (never a silent pass).
#
# Environment: CAMCLASSD_OPENVINO_LIB (OpenVINO's libs dir, required), CAMCLASS_BIN (default
# .build/release), CAMCLASS_TEST_OUT (default .build/camera-test: results stay there to inspect).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO" || exit 1
export CAMCLASS_BIN="${CAMCLASS_BIN:-.build/release}"
OUT="${CAMCLASS_TEST_OUT:-$REPO/.build/camera-test}"

fail() {
    echo "camera test: FAILED: $*" >&2
    echo "camera test: 0 passed, 1 failed"
    exit 1
}

[ -n "${CAMCLASSD_OPENVINO_LIB:-}" ] || fail "CAMCLASSD_OPENVINO_LIB is not set (run through make test-camera)"
for b in camclassd camclass; do
    [ -x "$CAMCLASS_BIN/$b" ] || fail "$CAMCLASS_BIN/$b is missing (make build)"
done
[ -f models/efficientnet_lite0.model.yaml ] || fail "the default model is missing (make models)"
[ -f Tests/StandIns/malloc_count.so ] || fail "Tests/StandIns/malloc_count.so is missing (make standin)"

"$REPO/tools/vivid-vm/setup.sh" || fail "tools/vivid-vm/setup.sh could not prepare the VM (see above)"

# One VM at a time on the machine (run.sh's lock), taken before the results directory is cleared:
# another run of this test may be using it.
LOCKFILE="${VIVID_VM_LOCK:-/tmp/vivid-vm.lock}"
exec 9>>"$LOCKFILE" || fail "cannot open $LOCKFILE"
if ! flock -n 9; then
    echo "camera test: another VM is running; waiting for $LOCKFILE"
    flock 9 || fail "flock $LOCKFILE failed"
fi
rm -rf "$OUT"
mkdir -p "$OUT" || fail "cannot create $OUT"
START=$(date +%s)
# About 7 min on a quiet machine; TCG on a busy host is 2-3x slower: the limit only catches a hung VM.
"$REPO/tools/vivid-vm/run.sh" --no-lock --timeout 1500 --share "$OUT" --env CAMCLASSD_OPENVINO_LIB --env CAMCLASS_BIN \
    -- bash Tests/Camera/vm-scenario.sh >"$OUT/vm-output.txt" 2>&1
RC=$?
echo "vivid VM: exit $RC after $(( $(date +%s) - START )) s (guest output: $OUT/vm-output.txt)"
tail -n 3 "$OUT/vm-output.txt"
python3 "$HERE/check_results.py" "$OUT" --vm-exit "$RC"
