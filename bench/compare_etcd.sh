#!/usr/bin/env bash
# raftkv against etcd on this machine, same load generator, fsync on, default
# timing, 3 nodes each on loopback. Runs each case against each system in
# turn (A B A B ...) for several rounds and prints the medians as a table.
#
#   bench/compare_etcd.sh [--quick] [--rounds N] [--duration SECONDS]
#                         [--json FILE] [--plot FILE.svg] [--results DIR]
#
# --quick: 3 rounds of 3 s per run (about 5 minutes in all).
# Default: 5 rounds of 10 s per run (about 15 minutes).
# Everything it starts is stopped on exit, Ctrl-C included.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=5
DURATION=10
JSON_OUT=""
PLOT_OUT=""
RESULTS=""
while (($#)); do
    case "$1" in
        --quick) ROUNDS=3; DURATION=3 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --json) JSON_OUT="$2"; shift ;;
        --plot) PLOT_OUT="$2"; shift ;;
        --results) RESULTS="$2"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

build
ensure_etcd
RESULTS="${RESULTS:-$WORK/results}"
mkdir -p "$RESULTS"

read -r RK1 RK2 RK3 EC1 EC2 EC3 EQ1 EQ2 EQ3 < <(free_ports 9)
start_raftkv_cluster "$WORK" "$RK1" "$RK2" "$RK3"
start_etcd_cluster "$WORK" "$EC1" "$EC2" "$EC3" "$EQ1" "$EQ2" "$EQ3"
"${BENCH[@]}" wait-leader --target raftkv --endpoints "$RK_ENDPOINTS" >/dev/null
"${BENCH[@]}" wait-leader --target etcd --endpoints "$ETCD_ENDPOINTS" >/dev/null
log "raftkv at $RK_ENDPOINTS (pids ${RK_PIDS[*]}), etcd at $ETCD_ENDPOINTS (pids ${ETCD_PIDS[*]}), etcd $(etcd --version | head -1)"

# run CASE SYSTEM ROUND WORKLOAD CLIENTS [workload flags...]
run() {
    local case="$1" system="$2" round="$3" workload="$4" clients="$5"
    shift 5
    local target=raftkv endpoints="$RK_ENDPOINTS" pids
    pids="$(join_by , "${RK_PIDS[@]}")"
    if [[ "$system" == etcd* ]]; then
        target=etcd endpoints="$ETCD_ENDPOINTS" pids="$(join_by , "${ETCD_PIDS[@]}")"
    fi
    local conns=$((clients < 8 ? clients : 8))
    local extra=()
    # The key space is written once, by the first read run of each system.
    if [[ "$workload" != put && "$round" != 1 ]]; then extra+=(--no-preload); fi
    "${BENCH[@]}" "$workload" --target "$target" --endpoints "$endpoints" \
        --clients "$clients" --conns "$conns" --duration "$DURATION" --warmup-ms 500 \
        --key-size 16 --val-size 256 --key-space 1000 --pids "$pids" --no-progress \
        --json "$RESULTS/${case}__${system}__r${round}.json" "$@" "${extra[@]}" \
        | sed "s/^/  [$case $system r$round] /" >&2
}

for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS ($DURATION s per run)"
    for c in 1 64 256; do
        run "put-$c" raftkv "$round" put "$c"
        run "put-$c" etcd "$round" put "$c"
    done
    for c in 1 64; do
        run "get-$c" raftkv-lease "$round" get "$c" --consistency linearizable
        run "get-$c" etcd-lin "$round" get "$c" --consistency linearizable
        run "get-$c" etcd-ser "$round" get "$c" --consistency serializable
    done
    run mixed-64 raftkv "$round" mixed 64 --read-ratio 0.9
    run mixed-64 etcd "$round" mixed 64 --read-ratio 0.9
done

echo
echo "raftkv vs etcd $(etcd --version | head -1 | awk '{print $3}'), 3 nodes each on loopback, fsync on, default timing;"
echo "16-byte keys, 256-byte values, 1000 keys; $ROUNDS rounds x $DURATION s per run; $(nproc) CPUs."
table_args=(--dir "$RESULTS")
[[ -n "$JSON_OUT" ]] && table_args+=(--json "$JSON_OUT")
[[ -n "$PLOT_OUT" ]] && table_args+=(--plot "$PLOT_OUT" --plot-case get-64)
"${BENCH[@]}" table "${table_args[@]}"
