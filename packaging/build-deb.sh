#!/usr/bin/env bash
# Builds camclassd's .deb from a staged install tree (`make install DESTDIR=STAGE PREFIX=/usr`).
#   packaging/build-deb.sh STAGE OUTDIR        prints the path of the .deb it wrote
# Environment: VERSION (default from git), DEB_COMPRESS (xz; gzip or none are faster), DEB_STRIP=0 to
# keep debug info, ALLOW_DYNAMIC_SWIFT=1 to package binaries that link
# the Swift runtime dynamically (tests; such a package runs only where the toolchain is).
set -euo pipefail
stage=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

arch=$(dpkg --print-architecture)
if [ -z "${VERSION:-}" ]; then
    if rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null); then
        VERSION="0.1.0~git$(git -C "$repo" log -1 --format=%cd --date=format:%Y%m%d).$rev"
    else
        VERSION=0.1.0
    fi
fi

# Run-time libraries → the packages that ship them (what dpkg-shlibdeps does, without versions).
declare -A seen=()
deps=()
for bin in "$stage"/usr/bin/*; do
    while read -r lib; do
        case "$lib" in
        /opt/swift/*|*/swift/linux/*)
            if [ "${ALLOW_DYNAMIC_SWIFT:-0}" != 1 ]; then
                echo "build-deb: $bin links the Swift runtime dynamically ($lib): build with --static-swift-stdlib (make deb does)" >&2
                exit 1
            fi
            continue ;;
        esac
        pkg=""
        for candidate in "$lib" "$(readlink -f "$lib")" "/usr$lib" "${lib#/usr}"; do
            pkg=$(dpkg -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
        done
        if [ -z "$pkg" ]; then echo "build-deb: no package ships $lib (needed by $bin)" >&2; exit 1; fi
        if [ -z "${seen[$pkg]:-}" ]; then seen[$pkg]=1; deps+=("$pkg"); fi
    done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done
depends=$(printf '%s\n' "${deps[@]}" adduser | sort -u | paste -sd, | sed 's/,/, /g')

# Debug info stays out of the package (91 → 64 MB per binary for the static release build).
if [ "${DEB_STRIP:-1}" = 1 ] && command -v strip >/dev/null; then
    for bin in "$stage"/usr/bin/*; do strip --strip-unneeded "$bin"; done
fi

mkdir -p "$stage/DEBIAN"
install -m 0755 "$here/deb/postinst" "$here/deb/prerm" "$here/deb/postrm" "$stage/DEBIAN/"
(cd "$stage" && find etc -type f | sed 's|^|/|') > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: camclassd
Version: $VERSION
Architecture: $arch
Maintainer: camclassd developers <camclassd@localhost>
Installed-Size: $size
Depends: $depends
Recommends: python3-venv
Section: misc
Priority: optional
Description: live camera classification daemon (V4L2 → BPU/OpenVINO → Unix socket)
 camclassd classifies frames from a V4L2 camera (or replayed images) with an
 image classifier on an RDK board's BPU (libdnn) or with OpenVINO, and
 publishes JSON Lines records to subscribers on a Unix socket and to a
 rolling log. Runs as a hardened systemd service (Type=notify, watchdog,
 reload on SIGHUP without dropping subscribers).
 .
 OpenVINO is not a Debian package: install it into /opt/camclassd/venv
 (python3 -m venv /opt/camclassd/venv && /opt/camclassd/venv/bin/pip install openvino).
CONTROL

mkdir -p "$out"
deb="$out/camclassd_${VERSION}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
