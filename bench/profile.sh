#!/usr/bin/env bash
# Profiles a 3-node raftkv cluster (the leader and one follower) with perf
# (software cpu-clock sampling: this machine has no hardware counters) under
# the 64-client put and get workloads, and writes the top functions by self
# time, by inclusive time, and the CPU split by thread.
#
#   bench/profile.sh [--duration SECONDS] [--out DIR] [--workloads "put get"]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=8
OUT="$ROOT/bench/results/profile"
WORKLOADS="put get"
while (($#)); do
    case "$1" in
        --duration) DURATION="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --workloads) WORKLOADS="$2"; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
command -v perf >/dev/null || { echo "perf not found (Debian: linux-perf)" >&2; exit 1; }

build
mkdir -p "$OUT"
read -r P1 P2 P3 < <(free_ports 3)
start_raftkv_cluster "$WORK" "$P1" "$P2" "$P3"
leader="$("${BENCH[@]}" wait-leader --endpoints "$RK_ENDPOINTS")"
pids_of() { "${BENCH[@]}" rss --endpoints "$1" | awk '{print $1}'; }
leader_pid="$(pids_of "$leader")"
follower_pid=""
for p in "${RK_PIDS[@]}"; do [[ "$p" != "$leader_pid" ]] && { follower_pid="$p"; break; }; done

# The first N lines of a perf report (head closing the pipe is not an error).
top() {
    local n="$1"
    shift
    { perf report --stdio "$@" 2>/dev/null || true; } | grep -v '^#' | grep '%' | cut -c1-160 | head -n "$n" || true
}

for w in $WORKLOADS; do
    extra=()
    [[ "$w" == get ]] && extra=(--consistency linearizable)
    "${BENCH[@]}" "$w" --endpoints "$RK_ENDPOINTS" --clients 64 --conns 8 \
        --duration "$((DURATION + 3))" --key-size 16 --val-size 256 --key-space 1000 \
        --no-progress --json "$OUT/$w-run.json" "${extra[@]}" >"$OUT/$w-run.txt" &
    gen=$!
    PIDS+=("$gen")
    sleep 2 # preload and warm-up
    for role in leader follower; do
        pid=$leader_pid
        [[ $role == follower ]] && pid=$follower_pid
        perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pid" \
            -o "$WORK/$w-$role.data" -- sleep "$((DURATION / 2))" 2>/dev/null || true
    done
    wait "$gen" || true
    forget_pid "$gen"
    for role in leader follower; do
        d="$WORK/$w-$role.data"
        [[ -s "$d" ]] || continue
        {
            echo "== $w, 64 clients, $role: CPU by thread"
            top 15 -i "$d" --no-children --sort comm -g none
            echo
            echo "== top functions by self time"
            top 45 -i "$d" --no-children --sort dso,symbol -g none
            echo
            echo "== top functions by inclusive time (children)"
            top 70 -i "$d" --children --sort symbol -g none
            echo
            echo "== raftkv code, codecs and system calls by inclusive time"
            { perf report --stdio -i "$d" --children --sort symbol -g none 2>/dev/null || true; } |
                grep -E 'raftkv_|prost::|hpack|fdatasync|fsync|pwrite|writev|sendmsg|sendto|recvfrom|recvmsg|read\b|futex_wait|epoll_wait|malloc|free' |
                cut -c1-160 | head -n 60 || true
        } >"$OUT/$w-$role.txt"
        log "wrote $OUT/$w-$role.txt"
    done
done
cat "$OUT"/*-run.txt
