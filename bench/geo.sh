#!/usr/bin/env bash
# Geo mode: 3 raftkv nodes on loopback whose peer traffic goes through
# delaying TCP proxies (this kernel has no netem), so every message between
# nodes takes DELAY ms more one way. Clients talk to the leader directly.
# Reports single-client write latency, lease-read latency and ReadIndex-read
# latency (lease switched off) at each delay.
#
#   bench/geo.sh [--delays "10 50"] [--duration SECONDS] [--json FILE]
#
# Lease off: `raftkv server --no-lease-reads` (or `--lease-reads=false`) when
# the server has it; otherwise a stand-in that makes the lease too short to
# ever hold (heartbeat 5 ms, lease 10 ms, drift bound 49.9999 %: the usable
# lease is 3.3 ms, below any round trip here), so every linearizable read
# takes the ReadIndex path. The script says which one it used.
#
# Three regions (`--regions`): nodes 1, 2, 3 in regions A, B, C; peer links
# delayed by the one-way matrix A-B / A-C / B-C (`--matrix "25 40 60"`), a
# client group in each region with 0 ms to its own node, and the delay of its
# region to reach the leader (node 1, region A). Measures per region the
# linearizable read through the leader's lease, through a follower read
# lease, a bounded-staleness read, a ReadIndex read; writes with and without
# read lease holders; reads of keys under write at the farthest holder; the
# write stall when a holder dies; and the time leadership takes to come back
# to its preferred node after a failover (see docs/benchmarks.md).
#
#   bench/geo.sh --regions [--matrix "25 40 60"] [--duration SECONDS] [--json FILE]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DELAYS="10 50"
DURATION=5
JSON_OUT=""
REGIONS=0
MATRIX="25 40 60"
while (($#)); do
    case "$1" in
        --delays) DELAYS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --json) JSON_OUT="$2"; shift ;;
        --regions) REGIONS=1 ;;
        --matrix) MATRIX="$2"; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if ((REGIONS)); then
    source "$(dirname "${BASH_SOURCE[0]}")/geo_regions.sh"
    exit 0
fi

build
server_help="$("$RAFTKV" server --help)"
if grep -q -- '--no-lease-reads' <<<"$server_help"; then
    LEASE_OFF=(--no-lease-reads) LEASE_OFF_HOW="--no-lease-reads"
elif grep -q -- '--lease-reads' <<<"$server_help"; then
    LEASE_OFF=(--lease-reads=false) LEASE_OFF_HOW="--lease-reads=false"
else
    LEASE_OFF=(--heartbeat-ms 5 --lease-ms 10 --drift-ppm 499999)
    LEASE_OFF_HOW="stand-in (no lease flag in raftkv server): ${LEASE_OFF[*]}"
fi
RESULTS="$WORK/results"
mkdir -p "$RESULTS"

# one_setup DELAY_MS MODE(lease|readindex)
one_setup() {
    local delay="$1" mode="$2"
    local data="$WORK/$mode-$delay"
    read -r P1 P2 P3 X1 X2 X3 < <(free_ports 6)
    # One proxy route per node: peers reach node i at X_i, which forwards to P_i.
    "${BENCH[@]}" proxy --delay-ms "$delay" \
        --listen "127.0.0.1:$X1" --to "127.0.0.1:$P1" \
        --listen "127.0.0.1:$X2" --to "127.0.0.1:$P2" \
        --listen "127.0.0.1:$X3" --to "127.0.0.1:$P3" 2>>"$WORK/proxy.log" &
    local proxy=$!
    PIDS+=("$proxy")
    local extra=()
    [[ "$mode" == readindex ]] && extra=("${LEASE_OFF[@]}")
    local nodes=() i=1
    for p in "$P1" "$P2" "$P3"; do
        local peers=() j=1
        for x in "$X1" "$X2" "$X3"; do
            ((j == i)) || peers+=("$j=127.0.0.1:$x")
            j=$((j + 1))
        done
        start_raftkv_node "$i" "$p" "$(join_by , "${peers[@]}")" "$data" "${extra[@]}"
        nodes+=("$LAST_PID")
        i=$((i + 1))
    done
    local direct="127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3"
    local leader
    leader="$("${BENCH[@]}" wait-leader --endpoints "$direct")"
    log "delay $delay ms, $mode: leader $leader"
    local common=(--endpoints "$leader" --clients 1 --duration "$DURATION" --warmup-ms 500
        --key-size 16 --val-size 256 --key-space 100 --pids "$(join_by , "${nodes[@]}")" --no-progress)
    "${BENCH[@]}" put "${common[@]}" --json "$RESULTS/put-$mode-$delay.json" | sed 's/^/  /' >&2
    "${BENCH[@]}" get "${common[@]}" --consistency linearizable \
        --json "$RESULTS/get-$mode-$delay.json" | sed 's/^/  /' >&2
    for p in "${nodes[@]}" "$proxy"; do stop_pid "$p"; done
}

for d in $DELAYS; do
    one_setup "$d" lease
    one_setup "$d" readindex
done

p50() { json_get "$1" .latency.p50_us; }
counter() { json_get "$1" ".server_counters.$2"; }
echo
echo "Geo mode: 3 nodes, peer links through delaying proxies, 1 client at the leader,"
echo "$DURATION s per figure; lease off by $LEASE_OFF_HOW."
echo
echo "| one-way delay | write p50 ms | lease-read p50 ms | ReadIndex-read p50 ms | lease / ReadIndex | reads by lease / ReadIndex (lease run; ReadIndex run) |"
echo "|---:|---:|---:|---:|---:|---|"
rows=()
for d in $DELAYS; do
    w="$(p50 "$RESULTS/put-lease-$d.json")"
    l="$(p50 "$RESULTS/get-lease-$d.json")"
    r="$(p50 "$RESULTS/get-readindex-$d.json")"
    how="$(counter "$RESULTS/get-lease-$d.json" reads_lease)/$(counter "$RESULTS/get-lease-$d.json" reads_pending); $(counter "$RESULTS/get-readindex-$d.json" reads_lease)/$(counter "$RESULTS/get-readindex-$d.json" reads_pending)"
    awk -v d="$d" -v w="$w" -v l="$l" -v r="$r" -v how="$how" \
        'BEGIN { printf "| %d ms | %.2f | %.3f | %.2f | %.3f | %s |\n", d, w/1000, l/1000, r/1000, l/r, how }'
    rows+=("{\"delay_ms\": $d, \"write_p50_us\": $w, \"lease_read_p50_us\": $l, \"readindex_read_p50_us\": $r}")
done
if [[ -n "$JSON_OUT" ]]; then
    printf '{"lease_off": "%s", "duration_s": %s, "rows": [%s]}\n' \
        "$LEASE_OFF_HOW" "$DURATION" "$(join_by , "${rows[@]}")" >"$JSON_OUT"
fi
