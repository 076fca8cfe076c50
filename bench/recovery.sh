#!/usr/bin/env bash
# Failover and recovery figures of a 3-node raftkv cluster on loopback at
# default timing (fsync on):
#  1. unavailability after kill -9 of the leader, seen by a steady writer and
#     a steady linearizable reader (several trials; the node is restarted);
#  2. resident memory per node with KEYS keys (16-byte keys, 100-byte values)
#     against the raw data size;
#  3. restart time of a follower with KEYS entries in its log: from start to
#     answering, and to having applied the leader's commit index.
#
#   bench/recovery.sh [--keys N] [--trials N] [--json FILE]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEYS=1000000
TRIALS=3
JSON_OUT=""
while (($#)); do
    case "$1" in
        --keys) KEYS="$2"; shift ;;
        --trials) TRIALS="$2"; shift ;;
        --json) JSON_OUT="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

build
read -r P1 P2 P3 < <(free_ports 3)
PORTS=("$P1" "$P2" "$P3")
PEERS="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3"
start_raftkv_cluster "$WORK" "$P1" "$P2" "$P3"
"${BENCH[@]}" wait-leader --endpoints "$RK_ENDPOINTS" >/dev/null

# The node index (0-based) of a pid we started.
index_of_pid() {
    for i in 0 1 2; do [[ "${RK_PIDS[$i]}" == "$1" ]] && { echo "$i"; return; }; done
    echo "pid $1 is not one of ours" >&2
    exit 1
}

restart_node() {
    local i="$1"
    start_raftkv_node "$((i + 1))" "${PORTS[$i]}" "$PEERS" "$WORK/raftkv"
    RK_PIDS[$i]="$LAST_PID"
}

# 1. Failover.
failover_rows=()
for t in $(seq "$TRIALS"); do
    "${BENCH[@]}" failover --endpoints "$RK_ENDPOINTS" --json "$WORK/failover-$t.json" >/dev/null
    killed="$(json_get "$WORK/failover-$t.json" .killed_pid)"
    wait "$killed" 2>/dev/null || true
    forget_pid "$killed"
    i="$(index_of_pid "$killed")"
    w="$(json_get "$WORK/failover-$t.json" .write_unavailable_ms)"
    r="$(json_get "$WORK/failover-$t.json" .read_unavailable_ms)"
    log "failover trial $t: killed node $((i + 1)); writes back after $w ms, reads after $r ms"
    failover_rows+=("$w $r")
    restart_node "$i"
    "${BENCH[@]}" wait-applied --endpoint "127.0.0.1:${PORTS[$i]}" \
        --index-from "$("${BENCH[@]}" wait-leader --endpoints "$RK_ENDPOINTS")" >/dev/null
done

# 2. Fill, then memory.
log "writing $KEYS keys (16-byte keys, 100-byte values)"
"${BENCH[@]}" put --endpoints "$RK_ENDPOINTS" --clients 64 --conns 8 --total "$KEYS" \
    --key-pattern seq --key-space "$KEYS" --key-size 16 --val-size 100 --no-progress \
    --json "$WORK/fill.json" >&2
leader="$("${BENCH[@]}" wait-leader --endpoints "$RK_ENDPOINTS")"
for i in 0 1 2; do
    "${BENCH[@]}" wait-applied --endpoint "127.0.0.1:${PORTS[$i]}" --index-from "$leader" >/dev/null
done
sleep 1
raw=$((KEYS * (16 + 100)))
rss_rows=()
for i in 0 1 2; do
    rss="$("${BENCH[@]}" rss --pids "${RK_PIDS[$i]}" | awk '{print $2}')"
    rss_rows+=("$rss")
done
log_bytes="$(du -sb "$WORK/raftkv" | awk '{print $1}')"

# 3. Restart a follower with KEYS entries in its log.
f=0
[[ "$leader" == "127.0.0.1:${PORTS[0]}" ]] && f=1
stop_pid "${RK_PIDS[$f]}" KILL
t0=$(date +%s%N)
restart_node "$f"
out="$("${BENCH[@]}" wait-applied --endpoint "127.0.0.1:${PORTS[$f]}" --index-from "$leader" --timeout-ms 120000)"
t1=$(date +%s%N)
answered_ms="$(sed -E 's/.*answered_ms=([0-9]+).*/\1/' <<<"$out")"
applied_ms=$(((t1 - t0) / 1000000))
restart_rss="$("${BENCH[@]}" rss --pids "${RK_PIDS[$f]}" | awk '{print $2}')"

echo
echo "raftkv failover and recovery, 3 nodes on loopback, default timing (E_max 1000 ms, lease 400 ms), $(nproc) CPUs"
echo
echo "| failover trial | writes unavailable ms | linearizable reads unavailable ms |"
echo "|---:|---:|---:|"
t=1
for row in "${failover_rows[@]}"; do
    read -r w r <<<"$row"
    printf '| %d | %.0f | %.0f |\n' "$t" "$w" "$r"
    t=$((t + 1))
done
echo
echo "target: <= E_max + D + 200 ms = 1600 ms"
echo
echo "| node | RSS MiB with $KEYS keys | RSS / raw data ($((raw / 1048576)) MiB) |"
echo "|---:|---:|---:|"
for i in 0 1 2; do
    awk -v n=$((i + 1)) -v r="${rss_rows[$i]}" -v raw="$raw" \
        'BEGIN { printf "| %d | %.0f | %.2f |\n", n, r/1048576, r/raw }'
done
echo
printf 'data folders (logs) of the 3 nodes: %.0f MiB\n' "$(awk -v b="$log_bytes" 'BEGIN{print b/1048576}')"
echo "follower restart with $KEYS entries: answering after ~${answered_ms} ms, caught up (applied the leader's commit index) after ${applied_ms} ms; RSS after restart $((restart_rss / 1048576)) MiB"
echo "targets: memory <= 2.5 x raw; restart <= 2000 ms"
if [[ -n "$JSON_OUT" ]]; then
    fo="$(for row in "${failover_rows[@]}"; do read -r w r <<<"$row"; printf '{"write_unavailable_ms": %s, "read_unavailable_ms": %s},' "$w" "$r"; done)"
    printf '{"keys": %s, "raw_bytes": %s, "failover": [%s], "rss_bytes": [%s], "data_dir_bytes": %s, "restart_answered_ms": %s, "restart_applied_ms": %s, "restart_rss_bytes": %s, "fill": %s}\n' \
        "$KEYS" "$raw" "${fo%,}" "$(join_by , "${rss_rows[@]}")" "$log_bytes" "$answered_ms" "$applied_ms" "$restart_rss" "$(cat "$WORK/fill.json")" >"$JSON_OUT"
fi
