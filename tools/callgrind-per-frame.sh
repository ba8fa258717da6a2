#!/usr/bin/env bash
# Instructions per frame of the whole camclassd process, counted by valgrind's callgrind: the
# release camclassd on the BPU stand-in (Tests/StandIns/libdnn.so: inference costs the CPU almost
# nothing, so this is the daemon's own work) replays the sample photos unpaced, once for N1 and
# once for N2 published frames; instructions per frame = (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up
# (runtime, config, model and sample loading) and shutdown cancel. Instruction counts are repeatable
# on a loaded machine where CPU times are not. A figure, not a test.
#
# Then, when the release camclass is built, camera frame conversion alone (MJPEG included, which the
# daemon's replay does not exercise): `camclass bench-convert` runs one format and size and one
# column, and callgrind collects only inside its measuring loop: "before" = CameraFrameConverter
# into the full-size pool buffer + NV12Ops.scale, "after" = ModelInputConverter (driver buffer ->
# 224x224 model input); instructions per frame = collected Ir / frames converted.
#
#   tools/callgrind-per-frame.sh [N1 [N2]]      (default 70 and 280: multiples of the 7 samples)
#   env: CAMCLASSD, CAMCLASS (binaries), STANDIN_DNN, MODEL, SAMPLES, CONVERT_ROWS ("mjpeg:1920x1080 ...")
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-70}
N2=${2:-280}
CAMCLASSD=${CAMCLASSD:-.build/release/camclassd}
CAMCLASS=${CAMCLASS:-.build/release/camclass}
STANDIN_DNN=${STANDIN_DNN:-$PWD/Tests/StandIns/libdnn.so}
MODEL=${MODEL:-$PWD/Tests/StandIns/bench_b2.model}
SAMPLES=${SAMPLES:-$PWD/samples}
CONVERT_ROWS=${CONVERT_ROWS:-"nv12:1280x720 yuyv:1280x720 mjpeg:640x480 mjpeg:1280x720 mjpeg:1920x1080"}

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 69; }
[ -x "$CAMCLASSD" ] || { echo "$CAMCLASSD missing: swift build -c release --product camclassd" >&2; exit 66; }
[ -f "$STANDIN_DNN" ] || { echo "$STANDIN_DNN missing: make standin" >&2; exit 66; }
[ -d "$SAMPLES" ] || { echo "$SAMPLES missing: make models" >&2; exit 66; }
[ "$N2" -gt "$N1" ] || { echo "N2 ($N2) must exceed N1 ($N1)" >&2; exit 64; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Swift's DWARF 5 debug info stops valgrind 3.19's reader ("unhandled dwarf2 abbrev form"): run
# copies without it (the symbol table stays, so functions keep their names).
objcopy --strip-debug "$CAMCLASSD" "$tmp/camclassd"
CAMCLASSD=$tmp/camclassd
if [ -x "$CAMCLASS" ]; then objcopy --strip-debug "$CAMCLASS" "$tmp/camclass"; CAMCLASS=$tmp/camclass; fi
# valgrind 3.19 writes into the signal mask a program passes to rt_sigsuspend (to keep its own
# signals out); libdispatch's mask is a constant in read-only memory, so valgrind itself faults
# when a Swift program's main thread parks in dispatch_main. Preload a sigsuspend that passes a
# copy on the stack.
cat > "$tmp/sigsuspend.c" <<'C'
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
C
cc -O2 -shared -fPIC -o "$tmp/sigsuspend.so" "$tmp/sigsuspend.c"
export LD_PRELOAD=$tmp/sigsuspend.so${LD_PRELOAD:+:$LD_PRELOAD}
cat > "$tmp/c.yaml" <<EOF
source:
  path: $SAMPLES
  fps: 0
model:
  path: $MODEL
publish:
  socket: $tmp/camclassd.sock
log:
  path: $tmp/log/classifications.log
inference:
  backend: bpu
  bpu_library: $STANDIN_DNN
EOF

# Total Ir of one callgrind output file (all threads: callgrind writes one file per process).
total_ir() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | head -1; }

daemon_ir() {
    local n=$1
    rm -rf "$tmp/log" "$tmp/camclassd.sock"
    valgrind --tool=callgrind --callgrind-out-file="$tmp/daemon-$n.out" \
        "$CAMCLASSD" --config "$tmp/c.yaml" --frames "$n" --log-level error >/dev/null 2>"$tmp/daemon-$n.err" \
        || { echo "camclassd under valgrind failed ($n frames):" >&2; tail -20 "$tmp/daemon-$n.err" >&2; exit 70; }
    local published
    published=$(grep -c '"classification"' "$tmp/log/classifications.log" || true)
    [ "$published" -ge "$n" ] || { echo "only $published of $n frames were published" >&2; exit 70; }
    total_ir "$tmp/daemon-$n.out"
}

echo "camclassd (release, BPU stand-in, samples replayed unpaced) under callgrind: $N1 and $N2 frames"
ir1=$(daemon_ir "$N1")
ir2=$(daemon_ir "$N2")
per=$(( (ir2 - ir1) / (N2 - N1) ))
printf '  Ir(%d) = %d, Ir(%d) = %d\n' "$N1" "$ir1" "$N2" "$ir2"
printf '  instructions per frame (whole process, start-up cancelled): %d\n' "$per"
# The per-thread split is not in one callgrind file; the functions that grow with frames are:
if command -v callgrind_annotate >/dev/null; then
    echo "  largest per-frame costs (exclusive Ir per frame, from the difference of the two runs):"
    for n in "$N1" "$N2"; do
        callgrind_annotate --inclusive=no --threshold=100 "$tmp/daemon-$n.out" 2>/dev/null \
            | sed -n 's/^ *\([0-9,]*\) ([^)]*) *\([^<].*\)$/\1\t\2/p' | grep -v -e 'PROGRAM TOTALS' -e '<counts for' | tr -d ',' > "$tmp/fn-$n.tsv" || true
    done
    awk -F'\t' -v n="$((N2 - N1))" 'NR == FNR { a[$2] = $1; next } { d = $1 - a[$2]; if (d > 0) print d / n "\t" $2 }' \
        "$tmp/fn-$N1.tsv" "$tmp/fn-$N2.tsv" | sort -t$'\t' -k1,1 -g -r | head -12 \
        | awk -F'\t' '{ printf "    %10.0f  %s\n", $1, substr($2, 1, 110) }'
fi

# Conversion alone, per call, only where bench-convert can run one row.
# (The help text is read whole first: grep -q closing the pipe early would fail it under pipefail.)
help=$([ -x "$CAMCLASS" ] && "$CAMCLASS" bench-convert --help </dev/null 2>/dev/null || true)
if [[ $help == *--rows* ]]; then
    echo
    echo "camera frame -> 224x224 model input (centre crop), instructions per frame under callgrind:"
    printf '  %-17s %14s %14s\n' "format size" "before" "after"
    frames=20
    calls=$((3 + frames))  # bench-convert's warm-up (3) + one run of $frames
    for row in $CONVERT_ROWS; do
        out=()
        # Instructions inside ConvertBenchmark.measure, which runs only the one column asked for:
        # before = CameraFrameConverter.convert + NV12Ops.scale, after = ModelInputConverter.convert.
        for column in before after; do
            valgrind --tool=callgrind --callgrind-out-file="$tmp/conv.out" --toggle-collect='*ConvertBenchmarkV7measure*' \
                "$CAMCLASS" bench-convert --rows "$row" --frames "$frames" --runs 1 --columns "$column" \
                --photo "$SAMPLES/chelsea.jpg" >/dev/null 2>"$tmp/conv.err" \
                || { echo "bench-convert under valgrind failed:" >&2; tail -5 "$tmp/conv.err" >&2; exit 70; }
            out+=("$(( $(total_ir "$tmp/conv.out") / calls ))")
        done
        printf '  %-17s %14d %14d\n' "$row" "${out[0]}" "${out[1]}"
    done
fi
