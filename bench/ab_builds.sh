#!/usr/bin/env bash
# Two builds of raftkv side by side, same load generator, alternating
# (A B A B): a 3-node cluster of each in turn runs 1-client and 64-client
# linearizable (lease) gets, and 1-client and 64-client puts. Use it to tell
# a change of ours from the machine's mood, e.g. against the build of an
# older commit:
#
#   git worktree add /tmp/old <commit>
#   (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --bin raftkv)
#   bench/ab_builds.sh /tmp/old-target/release/raftkv [--rounds N] [--duration S]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OLD="${1:?usage: bench/ab_builds.sh OLD_RAFTKV_BINARY [--rounds N] [--duration S]}"
shift
ROUNDS=2
DURATION=4
while (($#)); do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -x "$OLD" ]] || { echo "not an executable: $OLD" >&2; exit 2; }
build
NEW="$RAFTKV"
for round in $(seq "$ROUNDS"); do
    for which in old new; do
        if [[ $which == old ]]; then RAFTKV="$OLD"; else RAFTKV="$NEW"; fi
        read -r P1 P2 P3 < <(free_ports 3)
        start_raftkv_cluster "$WORK/r$round-$which" "$P1" "$P2" "$P3"
        "${BENCH[@]}" wait-leader --endpoints "$RK_ENDPOINTS" >/dev/null
        pids="$(join_by , "${RK_PIDS[@]}")"
        for spec in "get 1" "get 64" "put 1" "put 64"; do
            read -r workload clients <<<"$spec"
            conns=$((clients < 8 ? clients : 8))
            extra=()
            [[ $workload == get ]] && extra=(--consistency linearizable)
            "${BENCH[@]}" "$workload" --target raftkv --endpoints "$RK_ENDPOINTS" \
                --clients "$clients" --conns "$conns" --duration "$DURATION" --warmup-ms 500 \
                --key-size 16 --val-size 256 --key-space 1000 --pids "$pids" --no-progress \
                "${extra[@]}" | sed "s/^/[$which r$round] /"
        done
        for p in "${RK_PIDS[@]}"; do
            kill "$p"
            wait "$p" 2>/dev/null || true
            forget_pid "$p"
        done
        RK_PIDS=()
    done
done
