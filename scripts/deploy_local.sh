#!/usr/bin/env bash
# Starts a local raftkv cluster, for those who expect the classic script.
# It builds the binary if needed and runs `raftkv local`, which starts the
# nodes as child processes, prints their endpoints and stops them all on
# Ctrl-C. Every argument is passed on (see `raftkv local --help`):
#
#   scripts/deploy_local.sh                      # 3 nodes on 127.0.0.1:7001-7003
#   scripts/deploy_local.sh --nodes 5            # 5 nodes on 7001-7005
#   scripts/deploy_local.sh --base-port 0        # free ports
#   scripts/deploy_local.sh --data-dir /tmp/kv   # data somewhere else
#
# Set RAFTKV_BIN to use an already built binary.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${RAFTKV_BIN:-}
if [[ -z $bin ]]; then
  (cd "$root" && cargo build --release --quiet --bin raftkv)
  bin=$root/target/release/raftkv
fi
[[ -x $bin ]] || { echo "deploy_local.sh: $bin is not executable" >&2; exit 1; }
# exec: Ctrl-C and SIGTERM reach `raftkv local` itself, which stops the nodes.
exec "$bin" local "$@"
