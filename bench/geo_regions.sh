# Three-region geo mode, sourced by bench/geo.sh --regions (see its header).
# Uses lib.sh's helpers and geo.sh's MATRIX, DURATION and JSON_OUT.

read -r D_AB D_AC D_BC <<<"$MATRIX"
build
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
# delay FROM TO (nodes 1..3 = regions A..C), one way.
delay() {
    case "$1$2" in
        12 | 21) echo "$D_AB" ;;
        13 | 31) echo "$D_AC" ;;
        23 | 32) echo "$D_BC" ;;
        *) echo 0 ;;
    esac
}
REGION=(- A B C)

# start_geo NAME [server flags...]: three nodes, six peer routes and two
# client routes (B and C to the leader) through three delaying proxies (one
# per pair of regions). Sets P[1..3] (direct), Y[2..3] (client routes to node
# 1), NODE_PIDS and LEADER_EP.
start_geo() {
    local name="$1"
    shift
    local data="$WORK/$name"
    local ports
    read -r -a ports < <(free_ports 11)
    P=(- "${ports[0]}" "${ports[1]}" "${ports[2]}")
    # X[ij]: where node i reaches node j.
    declare -gA X=([12]="${ports[3]}" [21]="${ports[4]}" [13]="${ports[5]}" [31]="${ports[6]}"
        [23]="${ports[7]}" [32]="${ports[8]}")
    Y=(- - "${ports[9]}" "${ports[10]}")
    PROXY_PIDS=()
    "${BENCH[@]}" proxy --delay-ms "$D_AB" \
        --listen "127.0.0.1:${X[12]}" --to "127.0.0.1:${P[2]}" \
        --listen "127.0.0.1:${X[21]}" --to "127.0.0.1:${P[1]}" \
        --listen "127.0.0.1:${Y[2]}" --to "127.0.0.1:${P[1]}" 2>>"$WORK/proxy.log" &
    PROXY_PIDS+=($!)
    "${BENCH[@]}" proxy --delay-ms "$D_AC" \
        --listen "127.0.0.1:${X[13]}" --to "127.0.0.1:${P[3]}" \
        --listen "127.0.0.1:${X[31]}" --to "127.0.0.1:${P[1]}" \
        --listen "127.0.0.1:${Y[3]}" --to "127.0.0.1:${P[1]}" 2>>"$WORK/proxy.log" &
    PROXY_PIDS+=($!)
    "${BENCH[@]}" proxy --delay-ms "$D_BC" \
        --listen "127.0.0.1:${X[23]}" --to "127.0.0.1:${P[3]}" \
        --listen "127.0.0.1:${X[32]}" --to "127.0.0.1:${P[2]}" 2>>"$WORK/proxy.log" &
    PROXY_PIDS+=($!)
    PIDS+=("${PROXY_PIDS[@]}")
    NODE_PIDS=(-)
    local i j
    for i in 1 2 3; do
        local peers=()
        for j in 1 2 3; do
            ((i == j)) || peers+=("$j=127.0.0.1:${X[$i$j]}")
        done
        start_raftkv_node "$i" "${P[$i]}" "$(join_by , "${peers[@]}")" "$data" "$@"
        NODE_PIDS+=("$LAST_PID")
    done
    DIRECT="127.0.0.1:${P[1]},127.0.0.1:${P[2]},127.0.0.1:${P[3]}"
    local leader
    leader="$("${BENCH[@]}" wait-leader --endpoints "$DIRECT")"
    if [[ "$leader" != "127.0.0.1:${P[1]}" ]]; then
        "$RAFTKV" transfer-leader --to 1 --endpoints "$DIRECT" >/dev/null
        leader="$("${BENCH[@]}" wait-leader --endpoints "$DIRECT")"
    fi
    [[ "$leader" == "127.0.0.1:${P[1]}" ]] || { log "node 1 does not lead ($leader)"; exit 1; }
    log "$name: node 1 (region A) leads; flags: $*"
}

stop_geo() {
    local p
    for p in "${NODE_PIDS[@]:1}" "${PROXY_PIDS[@]}"; do stop_pid "$p"; done
}

# load NAME WORKLOAD ENDPOINT PID [more bench flags]: one client, DURATION s.
load() {
    local name="$1" workload="$2" ep="$3" pid="$4"
    shift 4
    local keys=(--key-space 20)
    [[ " $* " == *" --key-space "* ]] && keys=()
    local duration=(--duration "$DURATION")
    [[ " $* " == *" --duration "* ]] && duration=()
    "${BENCH[@]}" "$workload" --endpoints "$ep" --clients 1 "${duration[@]}" \
        --warmup-ms 500 --key-size 16 --val-size 256 "${keys[@]}" --pids "$pid" \
        --no-progress --json "$RESULTS/$name.json" "$@" | sed "s/^/  $name: /" |
        tee -a "$RESULTS/summaries.txt" >&2
}

# --- read lease holders in every region -------------------------------------
start_geo holders --read-lease
for r in 2 3; do
    load "follower-${REGION[$r]}" get "127.0.0.1:${P[$r]}" "${NODE_PIDS[$r]}" \
        --consistency linearizable --read-nearest
    load "bounded-holders-${REGION[$r]}" get "127.0.0.1:${P[$r]}" "${NODE_PIDS[$r]}" \
        --consistency bounded --max-staleness-ms 500 --read-nearest --check-bound
done
load put-holders put "127.0.0.1:${P[1]}" "${NODE_PIDS[1]}"
# Reads of 4 hot keys at the farthest holder (C) while region A writes them.
load hot-writes put "127.0.0.1:${P[1]}" "${NODE_PIDS[1]}" --key-space 4 2>/dev/null &
writer=$!
sleep 0.3
load hot-reads-C get "127.0.0.1:${P[3]}" "${NODE_PIDS[3]}" --key-space 4 --no-preload --read-nearest
wait "$writer"
# A holder dies: writes stall until its guard passes.
( sleep 2; kill -KILL "${NODE_PIDS[3]}" ) &
killer=$!
load stall put "127.0.0.1:${P[1]}" "${NODE_PIDS[1]}" --duration 5
wait "$killer" || true
forget_pid "${NODE_PIDS[3]}"
NODE_PIDS[3]=""
for p in "${NODE_PIDS[1]}" "${NODE_PIDS[2]}" "${PROXY_PIDS[@]}"; do stop_pid "$p"; done

# --- no holders ---------------------------------------------------------------
start_geo plain
load leader-A get "127.0.0.1:${P[1]}" "${NODE_PIDS[1]}" --consistency linearizable
for r in 2 3; do
    load "leader-${REGION[$r]}" get "127.0.0.1:${Y[$r]}" "${NODE_PIDS[1]}" --consistency linearizable
    load "bounded-${REGION[$r]}" get "127.0.0.1:${P[$r]}" "${NODE_PIDS[$r]}" \
        --consistency bounded --max-staleness-ms 500 --read-nearest --check-bound
done
load put-plain put "127.0.0.1:${P[1]}" "${NODE_PIDS[1]}"
stop_geo

# --- ReadIndex (lease reads off) ----------------------------------------------
start_geo readindex --no-lease-reads
load readindex-A get "127.0.0.1:${P[1]}" "${NODE_PIDS[1]}" --consistency linearizable
for r in 2 3; do
    load "readindex-${REGION[$r]}" get "127.0.0.1:${Y[$r]}" "${NODE_PIDS[1]}" --consistency linearizable
done
stop_geo

# --- leadership back to its preferred node after a failover -------------------
RETURN_MS=""
if "$RAFTKV" server --help | grep -q -- '--preferred-leaders'; then
    start_geo placement --preferred-leaders 1
    t0=$(date +%s%N)
    stop_pid "${NODE_PIDS[1]}" KILL
    NODE_PIDS[1]=""
    # Elsewhere a leader takes over; node 1 comes back and leadership returns.
    survivors="127.0.0.1:${P[2]},127.0.0.1:${P[3]}"
    "${BENCH[@]}" wait-leader --endpoints "$survivors" >/dev/null
    t1=$(date +%s%N)
    peers1="2=127.0.0.1:${X[12]},3=127.0.0.1:${X[13]}"
    start_raftkv_node 1 "${P[1]}" "$peers1" "$WORK/placement" --preferred-leaders 1
    NODE_PIDS[1]="$LAST_PID"
    t2=$(date +%s%N)
    while :; do
        leader="$("${BENCH[@]}" wait-leader --endpoints "$DIRECT")"
        [[ "$leader" == "127.0.0.1:${P[1]}" ]] && break
        sleep 0.05
    done
    t3=$(date +%s%N)
    RETURN_MS=$(((t3 - t2) / 1000000))
    log "failover to another region took $(((t1 - t0) / 1000000)) ms; leadership back at node 1 $RETURN_MS ms after it restarted"
    stop_geo
fi

# --- report -------------------------------------------------------------------
p50() { json_get "$RESULTS/$1.json" .latency.p50_us; }
p99() { json_get "$RESULTS/$1.json" .latency.p99_us; }
max() { json_get "$RESULTS/$1.json" .latency.max_us; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
served_at() { json_get "$RESULTS/$1.json" .server_counters.reads_lease; }

echo
echo "Geo mode, three regions: one-way delays A-B $D_AB ms, A-C $D_AC ms, B-C $D_BC ms;"
echo "node 1 (A) leads; 1 client per figure, $DURATION s; p50 in ms."
echo
echo "| region | leader-lease read | follower-read-lease read | ratio | bounded read (500 ms), holders / none | ReadIndex read |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| A (leader) | $(ms "$(p50 leader-A)") | (leader) | - | - | $(ms "$(p50 readindex-A)") |"
for r in B C; do
    l="$(p50 "leader-$r")" f="$(p50 "follower-$r")"
    echo "| $r | $(ms "$l") | $(ms "$f") | $(ratio "$f" "$l") | $(ms "$(p50 "bounded-holders-$r")") / $(ms "$(p50 "bounded-$r")") | $(ms "$(p50 "readindex-$r")") |"
done
wh="$(p50 put-holders)" wp="$(p50 put-plain)"
echo
echo "Writes from A: p50 $(ms "$wp") ms without holders, $(ms "$wh") ms with holders in B and C (ratio $(ratio "$wh" "$wp"); round trip to the farthest holder $((2 * D_AC)) ms)."
echo "Reads of 4 keys under write at holder C: p50 $(ms "$(p50 hot-reads-C)") ms, p99 $(ms "$(p99 hot-reads-C)") ms (one-way delay from the leader: $D_AC ms)."
echo "Bounded reads checked against their bound (a writer and a reader of one more key during each bounded run):"
grep -h "bound check" "$RESULTS/summaries.txt" | sed 's/^ */  /'
echo "Follower reads served at the holder itself: B $(served_at follower-B), C $(served_at follower-C) (counter reads_lease of that node)."
echo "Write stall when holder C dies (max write latency over the run): $(ms "$(max stall)") ms (D_read 400 ms capped by the leader lease; heartbeat 50 ms)."
[[ -n "$RETURN_MS" ]] && echo "Leadership back at the preferred node 1: $RETURN_MS ms after it restarted."
if [[ -n "$JSON_OUT" ]]; then
    python3 - "$RESULTS" "$JSON_OUT" "$MATRIX" "$DURATION" "${RETURN_MS:-null}" <<'PY'
import json, os, sys
res, out, matrix, duration, ret = sys.argv[1:6]
runs = {f[:-5]: json.load(open(os.path.join(res, f))) for f in sorted(os.listdir(res)) if f.endswith(".json")}
json.dump({"matrix_one_way_ms": [int(x) for x in matrix.split()], "duration_s": float(duration),
           "leadership_return_ms": None if ret == "null" else int(ret),
           "runs": {k: {"latency": v["latency"], "reads": v["reads"], "writes": v["writes"],
                        "errors": v["errors"], "server_counters": v.get("server_counters", {})}
                    for k, v in runs.items()}}, open(out, "w"), indent=1)
PY
fi
