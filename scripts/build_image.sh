#!/usr/bin/env bash
# Build the raftkv container image on this machine without pulling anything:
# compile the release binary, assemble a root file system from it
# (scripts/make_rootfs.sh) and build deploy/Dockerfile.prebuilt, which is
# FROM scratch. With a registry, `docker build -f deploy/Dockerfile .` does
# the same in a Rust build container.
#
#   scripts/build_image.sh [TAG]      (default tag: raftkv:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-raftkv:latest}
# The image carries the server and the client commands, not the benchmark
# (no etcd client, no load generator): --no-default-features.
cargo build --release --bin raftkv --no-default-features
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
scripts/make_rootfs.sh target/release/raftkv "$ctx"
cp deploy/Dockerfile.prebuilt "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null 2>&1 || DOCKER_BUILDKIT=0 docker build -t "$tag" "$ctx"
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "built image $tag: $((size / 1024 / 1024)) MiB ($size bytes)"
