#!/usr/bin/env bash
# Run a host-built command inside a qemu VM (Debian kernel, TCG) that has the
# vivid virtual camera loaded, e.g. against /dev/video0.
#
# Usage: tools/vivid-vm/run.sh [options] -- COMMAND [ARGS...]
#
# Options:
#   --timeout SEC        host-side limit for the whole VM run (default 300)
#   --vivid-opts OPTS    vivid module options, comma-separated
#                        (default n_devs=1,node_types=0x1: one capture node,
#                        /dev/video0). Array values keep their commas:
#                        n_devs=2,node_types=0x1,0x1
#   --cache DIR          cache made by setup.sh (default $VIVID_VM_CACHE or
#                        <repo>/.cache/vivid-vm)
#   --share DIR          use DIR (created if missing, kept) as the writable
#                        share; default: a temporary directory, removed at the
#                        end unless --keep-share
#   --keep-share         keep the temporary share and print its path
#   --env NAME           pass the host's $NAME into the guest (repeatable)
#   --env NAME=VALUE     set NAME=VALUE in the guest (repeatable)
#   --console            stream the serial console (boot messages and the
#                        command's output, live) to stdout instead of printing
#                        the command's clean output after the VM exits
#   --kernel FILE        kernel to boot (default CACHE/vmlinux, the
#                        decompressed kernel booted by PVH, else CACHE/vmlinuz)
#   --memory MB          guest memory (default 2048)
#   --smp N              guest CPUs (default 2)
#   --cpu MODEL          qemu CPU model (default max: SSE4.x/AVX2, which host
#                        builds such as OpenVINO's CPU plugin need; qemu's
#                        own default, qemu64, stops them with SIGILL)
#   --no-lock            do not serialize with other run.sh calls (default:
#                        wait for the machine-wide lock $VIVID_VM_LOCK, default
#                        /tmp/vivid-vm.lock, so only one VM runs at a time)
#   -q, --quiet          no harness messages on stderr (errors still shown)
#
# The command runs as root in a chroot of the host's root file system, which
# is read-only; it starts in the caller's current directory. Writable places:
# $VM_SHARE (the share, seen on the host), /tmp (host /tmp shown read-through,
# writes stay in the VM), /run, /dev/shm. Guest environment: PATH (host's PATH
# plus this directory, for vm-ctl), HOME, TERM=dumb, VM_SHARE, VIVID_VM=1,
# VIVID_VM_OPTS, and what --env names. Use `vm-ctl` inside for unplug/replug.
#
# Exit status: the command's exit status; 124 when the timeout hit; 125 when
# the harness failed (not set up, qemu missing, VM gave no exit code); 2 usage.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

TIMEOUT=300
VIVID_OPTS="n_devs=1,node_types=0x1"
CACHE="${VIVID_VM_CACHE:-$REPO/.cache/vivid-vm}"
SHARE=""
KEEP_SHARE=0
CONSOLE=0
MEMORY=2048
SMP=2
CPU=max
KERNEL=""
LOCK=1
QUIET=0
ENVS=()

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
info() { [ "$QUIET" = 1 ] || echo "vivid-vm: $*" >&2; }
fail() { echo "vivid-vm: ERROR: $*" >&2; exit 125; }
need_arg() { [ $# -ge 2 ] || { echo "vivid-vm: $1 needs an argument" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) need_arg "$@"; TIMEOUT="$2"; shift 2 ;;
        --vivid-opts) need_arg "$@"; VIVID_OPTS="$2"; shift 2 ;;
        --cache) need_arg "$@"; CACHE="$2"; shift 2 ;;
        --share) need_arg "$@"; SHARE="$2"; shift 2 ;;
        --keep-share) KEEP_SHARE=1; shift ;;
        --env) need_arg "$@"; ENVS+=("$2"); shift 2 ;;
        --console) CONSOLE=1; shift ;;
        --kernel) need_arg "$@"; KERNEL="$2"; shift 2 ;;
        --memory) need_arg "$@"; MEMORY="$2"; shift 2 ;;
        --smp) need_arg "$@"; SMP="$2"; shift 2 ;;
        --cpu) need_arg "$@"; CPU="$2"; shift 2 ;;
        --no-lock) LOCK=0; shift ;;
        -q|--quiet) QUIET=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) echo "vivid-vm: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "vivid-vm: no command given" >&2; usage; }
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -gt 0 ] || { echo "vivid-vm: bad --timeout '$TIMEOUT'" >&2; exit 2; }
case "$VIVID_OPTS" in *[[:space:]]*) echo "vivid-vm: --vivid-opts must not contain spaces" >&2; exit 2 ;; esac

# --- prerequisites -----------------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null \
    || fail "qemu-system-x86_64 not found: run tools/vivid-vm/setup.sh"
command -v timeout >/dev/null || fail "timeout (coreutils) not found"
[ -d "$CACHE" ] || fail "cache $CACHE missing: run tools/vivid-vm/setup.sh${CACHE:+ (with the same cache dir)}"
CACHE="$(cd "$CACHE" && pwd)"
INITRD="$CACHE/initramfs.cpio.gz"
if [ -z "$KERNEL" ]; then
    KERNEL="$CACHE/vmlinuz"
    [ -s "$CACHE/vmlinux" ] && KERNEL="$CACHE/vmlinux"
fi
if [ ! -s "$KERNEL" ] || [ ! -s "$INITRD" ]; then
    fail "no kernel/initramfs in $CACHE: run tools/vivid-vm/setup.sh"
fi

# --- share -----------------------------------------------------------------------
CLEANUP_SHARE=0
if [ -n "$SHARE" ]; then
    mkdir -p "$SHARE" || fail "cannot create share $SHARE"
    SHARE="$(cd "$SHARE" && pwd)"
else
    SHARE="$(mktemp -d "${TMPDIR:-/tmp}/vivid-vm-share.XXXXXX")" || fail "mktemp failed"
    [ "$KEEP_SHARE" = 1 ] || CLEANUP_SHARE=1
fi
case "$SHARE" in *,*) fail "the share path must not contain a comma: $SHARE" ;; esac
QEMU_PID=""
cleanup() {
    [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null
    [ "$CLEANUP_SHARE" = 1 ] && rm -rf "$SHARE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -f "$SHARE"/{run.sh,out.log,console.log,exit_code,exit_code.tmp,init_error}

# --- the guest script ----------------------------------------------------------------
shq() { local s=$1; printf "'%s'" "${s//\'/\'\\\'\'}"; }
{
    echo '#!/bin/sh'
    echo '# generated by tools/vivid-vm/run.sh; run by the guest /init in the chroot'
    if [ "$CONSOLE" = 0 ]; then
        echo 'exec >/run/vmshare/out.log 2>&1'
    fi
    echo "export PATH=$(shq "$PATH:$HERE")"
    echo "export HOME=$(shq "${HOME:-/root}")"
    echo "export TERM=dumb VIVID_VM=1 VM_SHARE=/run/vmshare VIVID_VM_OPTS=$(shq "$VIVID_OPTS")"
    for e in "${ENVS[@]}"; do
        name="${e%%=*}"
        [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "vivid-vm: bad --env '$e'" >&2; exit 2; }
        if [[ "$e" == *=* ]]; then
            echo "export $name=$(shq "${e#*=}")"
        elif [ -n "${!name+set}" ]; then
            echo "export $name=$(shq "${!name}")"
        else
            echo "unset $name"
        fi
    done
    echo "cd $(shq "$PWD") || { echo $(shq "vivid-vm: cannot cd to $PWD in the guest") >&2; exit 125; }"
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(shq "$a")"; done
    echo
} >"$SHARE/run.sh" || fail "cannot write $SHARE/run.sh"

# --- boot ---------------------------------------------------------------------------
APPEND="console=ttyS0 quiet panic=-1 vivid_opts=$VIVID_OPTS"
QEMU=(qemu-system-x86_64 -accel tcg -cpu "$CPU" -m "$MEMORY" -smp "$SMP" -nographic -no-reboot
      -nic none
      -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND"
      -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hostroot"
      -virtfs "local,path=$SHARE,mount_tag=share,security_model=none,id=share")

if [ "$LOCK" = 1 ]; then
    LOCKFILE="${VIVID_VM_LOCK:-/tmp/vivid-vm.lock}"
    exec 9>>"$LOCKFILE" || fail "cannot open $LOCKFILE"
    if ! flock -n 9; then
        info "another VM is running; waiting for $LOCKFILE"
        flock 9 || fail "flock failed"
    fi
fi

CONSOLE_FILTER='s/\r$//; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[c78]//g'

info "booting (timeout ${TIMEOUT}s, vivid $VIVID_OPTS, share $SHARE)"
START=$(date +%s.%N)
if [ "$CONSOLE" = 1 ]; then
    # Drop CRs and the firmware's terminal escapes (ESC c would reset the
    # caller's terminal).
    timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 | sed -u "$CONSOLE_FILTER" \
        | tee "$SHARE/console.log"
    QEMU_RC=${PIPESTATUS[0]}
else
    timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$SHARE/console.log" 2>&1 &
    QEMU_PID=$!
    wait "$QEMU_PID"
    QEMU_RC=$?
    QEMU_PID=""
fi
END=$(date +%s.%N)
ELAPSED=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.1f", b - a }')

if [ "$CONSOLE" = 0 ] && [ -f "$SHARE/out.log" ]; then
    cat "$SHARE/out.log"
fi

show_console_tail() {
    [ "$CONSOLE" = 0 ] && [ -f "$SHARE/console.log" ] || return 0
    echo "vivid-vm: last console lines:" >&2
    tail -n 30 "$SHARE/console.log" | sed "$CONSOLE_FILTER; s/^/  | /" >&2
}

BOOT=""
if [ -f "$SHARE/console.log" ]; then
    BOOT=$(sed -n 's/.*vivid-vm: \[\([0-9.]*\)s\] \/dev\/video0 is present.*/\1/p' "$SHARE/console.log" | head -n1)
fi

if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
    echo "vivid-vm: ERROR: timed out after ${TIMEOUT}s (qemu killed)" >&2
    show_console_tail
    exit 124
fi
if [ ! -f "$SHARE/exit_code" ]; then
    echo "vivid-vm: ERROR: the VM produced no exit code (qemu exit status $QEMU_RC)" >&2
    [ -f "$SHARE/init_error" ] && echo "vivid-vm: guest init: $(cat "$SHARE/init_error")" >&2
    show_console_tail
    exit 125
fi
RC="$(tr -dc '0-9' <"$SHARE/exit_code")"
[ -n "$RC" ] || fail "unreadable exit code in $SHARE/exit_code"
info "command exited with $RC (VM ${ELAPSED}s${BOOT:+, /dev/video0 at ${BOOT}s guest uptime})"
[ "$KEEP_SHARE" = 1 ] && [ "$CLEANUP_SHARE" = 0 ] && echo "vivid-vm: share kept at $SHARE" >&2
exit "$RC"
