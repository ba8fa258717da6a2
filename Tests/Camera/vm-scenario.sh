#!/usr/bin/env bash
# The camera integration scenario, run INSIDE the vivid VM by Tests/Camera/camera-test.sh
# (tools/vivid-vm/run.sh). It drives the real camclassd against vivid and records what happened
# into $VM_SHARE; Tests/Camera/check_results.py judges it on the host.
#
# A: NV12 640x480@25 through a by-id-style symlink /tmp/v4l/by-id/vivid-cam -> /dev/video0, a
#    subscriber on the socket, then faults: dropped buffers, the buffer error flag, a stall, a
#    fatal streaming error, vivid's disconnect, a hot unplug (unbind) + rmmod + insmod, and an
#    unplug whose camera comes back as /dev/video1 (the link re-pointed, as udev would).
# B: YUYV through `source: auto`; meanwhile a second daemon on the same camera (busy) and one
#    running as an unprivileged user (permission denied) must refuse to start, saying why.
# E: two vivid cameras (n_devs=2) on one engine, `sources:` front (NV12) and rear (YUYV); rear is
#    unplugged and comes back while front keeps classifying.
# Every step is a mark in marks.tsv: "<uptime s> <wall s> <name> <rolling-log lines> <daemon alive>
# <subscriber alive>". Waits read the rolling log (every record, from the first); the subscriber's
# copy is checked afterwards.
set -u

OUT="${VM_SHARE:?run me through tools/vivid-vm/run.sh}"
BIN="${CAMCLASS_BIN:-.build/release}"
MODEL="${CAMCLASS_MODEL:-models/efficientnet_lite0.model.yaml}"
RUN=/tmp/camtest
LINK_DIR=/tmp/v4l/by-id
LINK=$LINK_DIR/vivid-cam
mkdir -p "$RUN" "$LINK_DIR"
: >"$OUT/marks.tsv"

DPID=""
SPID=""
LOG=/dev/null
# The system Python: a pyenv shim on PATH costs ~10 s per start under TCG.
WAIT="/usr/bin/python3 Tests/Camera/vmwait.py"
now() { cut -d' ' -f1 /proc/uptime; }
lines() { wc -l <"$LOG" 2>/dev/null || echo 0; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && echo 1 || echo 0; }
mark() {
    MARK_WALL=$(date +%s.%N)
    echo "$(now) $MARK_WALL $1 $(lines) $(alive "$DPID") $(alive "$SPID")" >>"$OUT/marks.tsv"
    echo "=== [$(now)s] $1 (log lines $(lines), daemon alive $(alive "$DPID"), subscriber alive $(alive "$SPID"))"
}
# wait_until TIMEOUT_S DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
    local timeout=$1 what=$2; shift 2
    local end=$(( $(date +%s) + timeout ))
    while ! "$@"; do
        if [ "$(date +%s)" -ge "$end" ]; then echo "TIMEOUT (${timeout}s): $what"; mark "timeout:$what"; return 1; fi
        sleep 0.2
    done
}
# await DESCRIPTION TIMEOUT VMWAIT-ARGS...: records in the rolling log (see vmwait.py).
await() {
    local what=$1 timeout=$2 t0; shift 2
    t0=$(now)
    if $WAIT "$LOG" --timeout "$timeout" "$@"; then echo "    $what: $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"; return 0; fi
    echo "TIMEOUT (${timeout}s): $what"; mark "timeout:$what"; return 1
}
ctl() { v4l2-ctl -d "$(readlink -f "$LINK")" -c "$1"; }

config() { # NAME SOURCE FORMATS [LOG_LEVEL] [QUEUE_CAPACITY]
    cat >"$RUN/$1.yaml" <<EOF
source:
  path: $2
camera:
  width: 640
  height: 480
  fps: 25
  formats: [$3]
  buffers: 4
  backoff_max_ms: 1000
  # 2 s: a stall is > 2 s without frames, a restart > 8 s (the stall step below needs the gap
  # between two v4l2-ctl calls, each 1-3 s under TCG on a busy host, to fall between the two).
  stall_timeout_ms: 2000
# One inference at a time and a short queue: under TCG an inference takes seconds, and stopping
# drains what is in flight within the daemon's 10 s shutdown bound.
inference:
  workers: 1
pipeline:
  queue_capacity: ${5:-1}
publish:
  socket: $RUN/$1.sock
log:
  path: $OUT/$1.log
daemon:
  log_level: ${4:-debug}
  # Under TCG one inference takes 6-10 s: draining the frame in flight and the queued one on
  # SIGTERM can take 20 s, past the default 10 s stop bound (measured in this VM).
  stop_timeout_s: 60
EOF
}

start_daemon() { # NAME [ENV=VALUE...]
    local name=$1; shift
    LOG="$OUT/$name.log"
    rm -f "$LOG"
    env "$@" "$BIN/camclassd" --config "$RUN/$name.yaml" --model "$MODEL" >"$OUT/$name.daemon.log" 2>&1 &
    DPID=$!
    mark "$name:started"
    wait_until 180 "$name socket" test -S "$RUN/$name.sock" || return 1
    "$BIN/camclass" subscribe --socket "$RUN/$name.sock" --json >"$OUT/$name.sub.jsonl" 2>"$OUT/$name.sub.err" &
    SPID=$!
    mark "$name:subscribed"
}

stop_daemon() { # NAME
    mark "$1:stopping"
    kill -TERM "$DPID" 2>/dev/null
    local rc
    wait "$DPID"; rc=$?
    echo "$rc" >"$OUT/$1.rc"
    DPID=""
    kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null
    SPID=""
    mark "$1:stopped rc=$rc"
}

# ------------------------------------------------------------------ cameras
"$BIN/camclass" cameras >"$OUT/cameras.txt" 2>&1
echo $? >"$OUT/cameras.rc"
head -n 12 "$OUT/cameras.txt"

# ------------------------------------------------------------------ the capture path alone
# camclass cameras --stream: camclassd's capture code without the model, so the rate is the
# camera's. NV12 twice under the allocation counter (Tests/StandIns/malloc_count.so): 100 and 300
# frames — the capture thread's allocations must not grow with frames.
for n in 100 300; do
    env LD_PRELOAD="$PWD/Tests/StandIns/malloc_count.so" MALLOC_COUNT_FILE="$OUT/alloc-$n.json" MALLOC_COUNT_PROCESS=camclass \
        "$BIN/camclass" cameras --stream /dev/video0 --formats NV12 --fps 25 --frames $n >"$OUT/stream-nv12-$n.txt" 2>&1
    echo $? >>"$OUT/stream-nv12-$n.txt"
    cat "$OUT/stream-nv12-$n.txt"
done
"$BIN/camclass" cameras --stream /dev/video0 --formats YUYV --fps 25 --frames 100 --raw >"$OUT/stream-yuyv.txt" 2>&1
echo $? >>"$OUT/stream-yuyv.txt"
cat "$OUT/stream-yuyv.txt"
mark streamed

# ------------------------------------------------------------------ A: NV12
ln -sfn /dev/video0 "$LINK"
# Queue capacity 2: while the worker spends seconds on one inference, two frames wait in the queue,
# each holding a driver buffer (a lease). The unplug below must happen with leases out (issue 12);
# with one queued frame the worker could take it (and return its buffer) while vm-ctl unbind runs.
config A "$LINK" NV12 debug 2
start_daemon A
await "A streaming" 120 --after-line 0 --event streaming
await "A first classifications" 120 --after-line 0 --event streaming --classified 3
mark baseline

# Dropped buffers: vivid skips sequence numbers (no error flag). v4l2-ctl itself can take seconds
# under TCG: the window that counts is between its return and the next call.
mark drops_on
ctl percentage_of_dropped_buffers=80
mark drops_applied
sleep 4
mark drops_clearing
ctl percentage_of_dropped_buffers=0
mark drops_off

# Buffers flagged V4L2_BUF_FLAG_ERROR.
mark errflag
for _ in 1 2 3; do ctl inject_v4l2_buf_flag_error=1; sleep 0.5; done

# No frames at all for longer than stall_timeout_ms (2 s), shorter than the 8 s restart.
mark stall_on
ctl percentage_of_dropped_buffers=100
sleep 3
ctl percentage_of_dropped_buffers=0
mark stall_off
await "classification after the stall" 90 --after-line "$(lines)" --since "$MARK_WALL" --classified 1

# A fatal streaming error: POLLERR, then DQBUF fails with EIO.
L=$(lines); mark fatal
ctl inject_fatal_streaming_error=1
mark fatal_applied
await "lost after the fatal error" 30 --after-line "$L" --event lost
await "classification after the fatal error" 90 --after-line "$L" --event streaming --classified 1

# vivid's disconnect: DQBUF fails with ENODEV; the node comes back once every handle is closed.
L=$(lines); mark disconnect
ctl disconnect=1
mark disconnect_applied
await "lost after disconnect" 30 --after-line "$L" --event lost
await "classification after disconnect" 90 --after-line "$L" --event streaming --classified 1

# Hot unplug while streaming (unbind) with frames of the camera still queued (their buffers leased:
# the daemon logs how many, and when they are back and the device closed), then the driver unloaded
# and loaded again.
returned() { grep -c "camera buffers returned after loss" "$OUT/A.daemon.log"; }
more_returned() { [ "$(returned)" -gt "$R" ]; }
R=$(returned)
L=$(lines); mark unplug
vm-ctl unbind
mark unplug_applied
await "lost after unbind" 30 --after-line "$L" --event lost
# The daemon closes the device only once the queued frames went through the worker (seconds each
# under TCG); until then rmmod fails (module in use).
wait_until 60 "buffers returned after the unplug" more_returned && mark unplug_returned
# Now that the daemon has let go of the camera, the driver can go too: a real unplug. (rmmod is
# refused while the daemon still holds the old file open: the mark says when it went through.)
rmmod_vivid() { vm-ctl unplug 2>/dev/null || { sleep 0.5; false; }; }
wait_until 60 "rmmod vivid after the unplug" rmmod_vivid && mark driver_unloaded
vm-ctl status
sleep 3  # the daemon keeps retrying (backoff) while nothing is there
L=$(lines); mark replug
vm-ctl replug
await "classification after replug" 90 --after-line "$L" --event streaming --classified 1

# An old handle still open at replug: the camera comes back as /dev/video1; udev would re-point
# the by-id link, which is what the daemon follows.
L=$(lines); mark renumber
exec 3</dev/video0
vm-ctl unbind
mark renumber_applied
await "lost before renumbering" 30 --after-line "$L" --event lost
vm-ctl bind
ls -l /dev/video*
sleep 2
ln -sfn /dev/video1 "$LINK"
mark relinked
await "classification at /dev/video1" 90 --after-line "$L" --event streaming --classified 1
exec 3<&-
mark A:done
stop_daemon A

# ------------------------------------------------------------------ B: YUYV, auto
config B auto YUYV info
start_daemon B
await "B classifications" 120 --after-line 0 --event streaming --classified 3
mark B:baseline
NODE=$(grep -o '"device":"[^"]*"' "$LOG" | head -n1 | cut -d'"' -f4)
echo "B streams from $NODE"

# Busy: a second daemon on the streaming camera must refuse to start, saying why.
config C "$NODE" YUYV
timeout 120 "$BIN/camclassd" --config "$RUN/C.yaml" --model "$MODEL" >"$OUT/busy.log" 2>&1
echo $? >"$OUT/busy.rc"
mark busy_checked

# Permission: the device nodes here are root's only (no udev rules): an unprivileged user is
# refused, with what to do about it.
mkdir -p "$RUN/nobody" && chmod 777 "$RUN/nobody"
cat >"$RUN/D.yaml" <<EOF
source:
  path: $NODE
publish:
  socket: $RUN/nobody/d.sock
log:
  path: $RUN/nobody/d.log
EOF
ls -l "$NODE"
timeout 120 setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$BIN/camclassd" --config "$RUN/D.yaml" --model "$MODEL" >"$OUT/perm.log" 2>&1
echo $? >"$OUT/perm.rc"
mark perm_checked

await "B still classifying" 90 --after-line "$(lines)" --since "$MARK_WALL" --classified 1
stop_daemon B

# ------------------------------------------------------------------ E: two cameras, one engine
# vivid again with two instances, one capture node each: /dev/video0 (front) and /dev/video1 (rear,
# opened through a by-id-style link). Then rear alone is unplugged: vivid's disconnect on its
# instance (unbind would take both: one platform device) and its link removed, as udev removes a
# by-id link; later the link is back (replug). front must keep streaming and classifying meanwhile.
vm-ctl unplug || mark "E:rmmod_failed"
vm-ctl replug n_devs=2,node_types=0x1,0x1 || mark "E:insmod_failed"
vm-ctl wait-present /dev/video1 || mark "E:no_video1"
REAR=$LINK_DIR/vivid-rear
ln -sfn /dev/video1 "$REAR"
cat >"$RUN/E.yaml" <<EOF
sources:
  - name: front
    path: /dev/video0
    camera:
      formats: [NV12]
  - name: rear
    path: $REAR
    camera:
      formats: [YUYV]
# 5 fps: vivid under TCG keeps up; either camera still delivers far more than the one worker takes.
camera:
  width: 640
  height: 480
  fps: 5
  buffers: 4
  backoff_max_ms: 1000
  stall_timeout_ms: 2000
inference:
  workers: 1
pipeline:
  queue_capacity: 1
publish:
  socket: $RUN/E.sock
log:
  path: $OUT/E.log
daemon:
  log_level: info
  # Stopping drains the frame in flight and one queued per camera: three inferences, each 6-10 s
  # under TCG, longer on a busy host.
  stop_timeout_s: 120
EOF
start_daemon E
await "E: front classified 3 times" 180 --after-line 0 --source front --event streaming --classified 3
await "E: rear classified" 90 --after-line 0 --source rear --event streaming --classified 1
"$BIN/camclass" status --socket "$RUN/E.sock" --json >"$OUT/E.status.json" 2>&1
mark E:baseline

L=$(lines); mark E:unplug
rm -f "$REAR"
vm-ctl disconnect /dev/video1
mark E:unplug_applied
await "E: rear lost" 30 --after-line "$L" --source rear --event lost
mark E:rear_lost
# Two front records published during the outage (one worker, front's alone once rear's last queued
# frame went through): enough to see whether front's pace held.
await "E: front classified during rear's outage" 90 --after-line "$L" --source front --since "$MARK_WALL" --classified 2
"$BIN/camclass" status --socket "$RUN/E.sock" --json >"$OUT/E.status-outage.json" 2>&1
mark E:replug
ln -sfn /dev/video1 "$REAR"
await "E: rear streaming and classified again" 90 --after-line "$L" --source rear --event streaming --classified 1
mark E:done
stop_daemon E
mark end
echo "scenario finished"
