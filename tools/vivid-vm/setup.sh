#!/usr/bin/env bash
# Prepare the vivid VM: host packages, Debian's current kernel, an initramfs.
#
# Usage: tools/vivid-vm/setup.sh [CACHE_DIR]
#   CACHE_DIR defaults to $VIVID_VM_CACHE, else <repo>/.cache/vivid-vm.
#
# Produces CACHE_DIR/vmlinuz and CACHE_DIR/initramfs.cpio.gz (plus
# CACHE_DIR/kernel/<release>/ with the kernel and the few modules used), and
# CACHE_DIR/vmlinux, the decompressed kernel: qemu boots it through its PVH
# entry point, which skips the in-guest decompression (about 3.5 s under TCG).
# Idempotent: a stamp keyed on the kernel package, version and the contents of
# this script and guest-init makes a second run take well under a second.
# Exits non-zero with a message on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${1:-${VIVID_VM_CACHE:-$REPO/.cache/vivid-vm}}"

PACKAGES=(qemu-system-x86 busybox-static v4l-utils kmod cpio xz-utils)
# Module chains the guest needs, in load order; their dependencies are
# resolved with modprobe --show-depends. vivid must stay last.
MODULE_ROOTS=(virtio_pci 9pnet_virtio 9p overlay vivid)

say() { echo "vivid-vm setup: $*" >&2; }
die() { echo "vivid-vm setup: ERROR: $*" >&2; exit 1; }
WORK=""
STAGE=""
on_exit() {
    local rc=$?
    [ -n "$STAGE" ] && rm -rf "$STAGE"
    if [ $rc -ne 0 ]; then
        [ -n "$WORK" ] && rm -rf "$WORK"
        echo "vivid-vm setup: FAILED (exit $rc)" >&2
    fi
}
trap on_exit EXIT

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 1 ] && return 0
    say "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
}

# --- 1. host packages ----------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]} and not root: apt-get install ${missing[*]}"
    say "installing ${missing[*]}"
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        say "install failed; refreshing the package lists and retrying"
        apt_update
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
fi
for tool in qemu-system-x86_64 depmod modprobe cpio gzip dpkg-deb apt-get; do
    command -v "$tool" >/dev/null || die "$tool not found after installing packages"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX (busybox-static) not found"

# --- 2. which kernel ---------------------------------------------------------------
# linux-image-amd64 is the metapackage; its candidate depends on the current
# kernel package, e.g. "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
# (Same answer as `apt-cache depends linux-image-amd64`, plus the version, in
# one apt-cache call.)
resolve_kernel_pkg() {
    apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | awk '
        /^Depends:/ {
            n = split(substr($0, 10), deps, ",")
            for (i = 1; i <= n; i++) {
                if (match(deps[i], /linux-image-[0-9][^ ]*/)) {
                    name = substr(deps[i], RSTART, RLENGTH)
                    ver = "unknown"
                    if (match(deps[i], /\(= [^)]*\)/)) ver = substr(deps[i], RSTART + 3, RLENGTH - 4)
                    print name, ver
                    exit
                }
            }
        }'
}
RESOLVED="$(resolve_kernel_pkg || true)"
if [ -z "$RESOLVED" ]; then
    apt_update
    RESOLVED="$(resolve_kernel_pkg || true)"
fi
[ -n "$RESOLVED" ] || die "cannot resolve the kernel package: linux-image-amd64 depends on no linux-image-<version> package (apt-cache show linux-image-amd64)"

mkdir -p "$CACHE" || die "cannot create $CACHE"
CACHE="$(cd "$CACHE" && pwd)"
# Keep the cache out of git without touching the repository's .gitignore.
[ -f "$CACHE/.gitignore" ] || echo '*' >"$CACHE/.gitignore"
STAMP="$CACHE/stamp"
SCRIPTS_HASH="$(cat "$HERE/setup.sh" "$HERE/guest-init" | sha256sum | cut -c1-16)"

set_kernel_vars() { # from $RESOLVED = "package version"
    read -r KPKG KVER <<<"$RESOLVED"
    KREL="${KPKG#linux-image-}"                   # e.g. 6.1.0-56-amd64
    KDIR="$CACHE/kernel/$KREL"
    KSTAMP="$KDIR/.complete"
    KKEY="$KPKG $KVER ${MODULE_ROOTS[*]} layout2" # the kernel dir's stamp
    KEY="$KPKG $KVER $SCRIPTS_HASH"               # the initramfs' stamp
}
set_kernel_vars

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] \
    && [ -s "$CACHE/initramfs.cpio.gz" ] && [ -e "$CACHE/vmlinuz" ]; then
    say "up to date ($KPKG $KVER) in $CACHE"
    exit 0
fi

# --- 3. kernel + modules -------------------------------------------------------------
# extract_vmlinux BZIMAGE CONFIG OUT: the ELF kernel inside the bzImage, only
# when the kernel can boot by PVH (CONFIG_PVH=y). Optional: on any problem
# run.sh simply boots the bzImage.
extract_vmlinux() {
    local img=$1 config=$2 out=$3 magic tool off
    grep -q '^CONFIG_PVH=y' "$config" || { say "no CONFIG_PVH: booting the compressed kernel"; return 0; }
    if grep -q '^CONFIG_KERNEL_XZ=y' "$config"; then magic='\xfd7zXZ\x00'; tool="xz -dc --single-stream"
    elif grep -q '^CONFIG_KERNEL_ZSTD=y' "$config"; then magic='\x28\xb5\x2f\xfd'; tool="zstd -dcq"
    elif grep -q '^CONFIG_KERNEL_GZIP=y' "$config"; then magic='\x1f\x8b\x08'; tool="gzip -dcq"
    else say "unknown kernel compression: booting the compressed kernel"; return 0
    fi
    command -v "${tool%% *}" >/dev/null || { say "${tool%% *} missing: booting the compressed kernel"; return 0; }
    for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
        # shellcheck disable=SC2086  # $tool is a command with options
        # (tail gets SIGPIPE when the decompressor stops at the stream end)
        tail -c +"$((off + 1))" "$img" 2>/dev/null | $tool >"$out.tmp" 2>/dev/null || true
        if [ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            mv "$out.tmp" "$out"
            return 0
        fi
    done
    rm -f "$out.tmp"
    say "warning: could not extract vmlinux from $img: booting the compressed kernel"
}

if [ ! -f "$KSTAMP" ] || [ "$(cat "$KSTAMP")" != "$KKEY" ]; then
    WORK="$CACHE/work"
    rm -rf "$WORK"
    mkdir -p "$WORK"
    say "downloading $KPKG ($KVER)"
    # Sandbox user root: the _apt user may not be able to write into $WORK.
    if ! (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2 2>/dev/null); then
        # Usually an old package list naming a kernel the mirror has dropped.
        say "download failed; refreshing the package lists and retrying"
        apt_update
        RESOLVED="$(resolve_kernel_pkg || true)"
        [ -n "$RESOLVED" ] || die "cannot resolve the kernel package after apt-get update"
        set_kernel_vars
        say "downloading $KPKG ($KVER)"
        (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2) || die "apt-get download $KPKG failed"
    fi
    rm -rf "$KDIR"
    mkdir -p "$KDIR/modules"
    DEB="$(ls "$WORK"/"$KPKG"_*.deb 2>/dev/null | head -n1)"
    [ -n "$DEB" ] || die "apt-get download left no .deb for $KPKG in $WORK"
    say "unpacking $(basename "$DEB")"
    dpkg-deb -x "$DEB" "$WORK/root" || die "dpkg-deb -x $DEB failed"
    [ -f "$WORK/root/boot/vmlinuz-$KREL" ] || die "the package has no boot/vmlinuz-$KREL"
    [ -d "$WORK/root/lib/modules/$KREL" ] || die "the package has no lib/modules/$KREL"
    depmod -b "$WORK/root" "$KREL" || die "depmod -b $WORK/root $KREL failed"

    # Resolve chains; keep the first occurrence of each module (load order).
    : >"$KDIR/modules/modules.list"
    declare -A seen=()
    for root in "${MODULE_ROOTS[@]}"; do
        deps="$(modprobe -C /dev/null -d "$WORK/root" -S "$KREL" --show-depends "$root")" \
            || die "modprobe --show-depends $root failed (is $root in this kernel?)"
        while read -r kind path _; do
            [ "$kind" = insmod ] || continue          # 'builtin X' needs nothing
            case "$path" in
                *.ko) ;;
                *) die "module $path is compressed or unexpected; only plain .ko is supported" ;;
            esac
            name="$(basename "$path")"
            [ -n "${seen[$name]:-}" ] && continue
            seen[$name]=1
            cp "$path" "$KDIR/modules/$name" || die "copy $path"
            echo "$name" >>"$KDIR/modules/modules.list"
        done <<<"$deps"
    done
    [ "$(tail -n1 "$KDIR/modules/modules.list")" = vivid.ko ] \
        || die "vivid.ko not resolved last: $(tr '\n' ' ' <"$KDIR/modules/modules.list")"
    cp "$WORK/root/boot/vmlinuz-$KREL" "$KDIR/vmlinuz" || die "copy vmlinuz"
    cp "$WORK/root/boot/config-$KREL" "$KDIR/config" || die "the package has no boot/config-$KREL"
    extract_vmlinux "$KDIR/vmlinuz" "$KDIR/config" "$KDIR/vmlinux"
    rm -rf "$WORK"
    echo "$KKEY" >"$KSTAMP"
    # Drop kernels of earlier versions.
    for d in "$CACHE"/kernel/*; do
        [ "$d" = "$KDIR" ] || rm -rf "$d"
    done
    say "kernel $KREL: $(wc -l <"$KDIR/modules/modules.list") modules"
fi

# --- 4. initramfs --------------------------------------------------------------------
STAGE="$(mktemp -d "$CACHE/initramfs.XXXXXX")"
mkdir -p "$STAGE"/{bin,dev,proc,sys,tmp,host,share,run,lib/modules}
cp "$BUSYBOX" "$STAGE/bin/busybox"
cp "$HERE/guest-init" "$STAGE/init"
chmod 755 "$STAGE/init" "$STAGE/bin/busybox"
cp "$KDIR"/modules/*.ko "$KDIR/modules/modules.list" "$STAGE/lib/modules/"
# The kernel opens /dev/console before /init runs: without the node, init has
# no stdout until it mounts devtmpfs.
mknod -m 600 "$STAGE/dev/console" c 5 1 2>/dev/null || say "warning: mknod /dev/console failed (init reopens it later)"
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort \
    | cpio -o -H newc --owner 0:0 --quiet | gzip -9n) >"$CACHE/initramfs.cpio.gz.tmp" \
    || die "building the initramfs failed"
mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"
ln -sfn "kernel/$KREL/vmlinuz" "$CACHE/vmlinuz"
if [ -s "$KDIR/vmlinux" ]; then ln -sfn "kernel/$KREL/vmlinux" "$CACHE/vmlinux"; else rm -f "$CACHE/vmlinux"; fi
echo "$KREL" >"$CACHE/kernel_release"
echo "$KEY" >"$STAMP"
say "ready: $CACHE/vmlinuz$([ -s "$KDIR/vmlinux" ] && echo " + vmlinux") ($KREL), $CACHE/initramfs.cpio.gz ($(du -h "$CACHE/initramfs.cpio.gz" | cut -f1))"
