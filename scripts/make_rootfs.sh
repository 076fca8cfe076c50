#!/usr/bin/env bash
# Assemble the root file system of the raftkv container image from a built
# binary, into OUT/rootfs, and the skeleton of its data volume into
# OUT/data (copied with --chown, as COPY makes everything root-owned): the binary, the shared libraries it links, glibc's name-service
# modules (so peers given by host name resolve inside a FROM-scratch image),
# and a non-root user. Used by deploy/Dockerfile (in its build stage) and by
# scripts/build_image.sh (on a machine with no image registry).
#
#   scripts/make_rootfs.sh target/release/raftkv /tmp/image-context
set -euo pipefail
bin=${1:?usage: make_rootfs.sh BINARY OUT}
top=${2:?usage: make_rootfs.sh BINARY OUT}
out=$top/rootfs
rm -rf "$out" "$top/data"
mkdir -p "$out"/etc "$out"/tmp "$top"/data
install -m 0755 "$bin" "$out"/raftkv
# Debug info is for profiling on the build machine, not for the image.
if command -v strip >/dev/null; then strip --strip-debug "$out"/raftkv; fi

copy_lib() {
  local lib=$1
  [ -e "$lib" ] || return 0
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
}
# Every library the binary needs, plus the loader.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do copy_lib "$lib"; done
# Name service: files (/etc/hosts) and dns (Docker's embedded resolver).
libdir=$(dirname "$(ldd "$bin" | grep -o '/[^ ]*libc\.so\.6')")
for nss in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do copy_lib "$libdir/$nss"; done

cat > "$out"/etc/nsswitch.conf <<'NSS'
hosts: files dns
NSS
cat > "$out"/etc/passwd <<'PW'
root:x:0:0:root:/:/raftkv
raftkv:x:10001:10001:raftkv:/data:/raftkv
PW
cat > "$out"/etc/group <<'GR'
root:x:0:
raftkv:x:10001:
GR
touch "$top"/data/.raftkv-volume
chmod 1777 "$out"/tmp
echo "rootfs in $out: $(du -sh "$out" | cut -f1)"
