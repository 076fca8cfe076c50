# Shared by the bench/ scripts: build, pick the load generator, start and
# stop raftkv and etcd clusters on loopback, clean up on any exit.
# Source it; it sets ROOT, RAFTKV, BENCH (an array), WORK (a temp dir).
# Binaries are looked for in $CARGO_TARGET_DIR (default: ROOT/target).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RAFTKV="$TARGET_DIR/release/raftkv"
PIDS=()
WORK=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        for _ in $(seq 30); do
            local alive=0
            for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            ((alive)) || break
            sleep 0.1
        done
        kill -KILL "${PIDS[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
    fi
    if [[ -n "$WORK" && -d "$WORK" && -z "${KEEP_WORK:-}" ]]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK="$(mktemp -d -t raftkv-bench.XXXXXX)"

build() {
    log "building raftkv and raftkv-bench (release)"
    (cd "$ROOT" && cargo build --release -q -p raftkv -p raftkv-bench)
    # Prefer `raftkv bench` once it is this generator (it has `proxy`).
    if "$RAFTKV" bench --help 2>/dev/null | grep -q 'proxy'; then
        BENCH=("$RAFTKV" bench)
    else
        BENCH=("$TARGET_DIR/release/raftkv-bench")
    fi
}

# Forget a process we stopped ourselves.
forget_pid() {
    local gone="$1" keep=()
    for p in "${PIDS[@]}"; do [[ "$p" == "$gone" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Kill one process we started, and wait for it.
stop_pid() {
    local sig="${2:-TERM}"
    kill "-$sig" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

free_ports() { "${BENCH[@]}" free-ports "$1"; }

# start_raftkv_node ID PORT PEERS DATA_ROOT [extra server flags...]
# Sets LAST_PID.
start_raftkv_node() {
    local id="$1" port="$2" peers="$3" data="$4"
    shift 4
    mkdir -p "$data"
    # Three nodes share this machine's cores: one runtime thread each, as
    # `raftkv local` runs them (RAFTKV_RUNTIME_THREADS overrides; builds
    # older than the flag run without it).
    local threads=()
    if "$RAFTKV" server --help 2>/dev/null | grep -q -- '--runtime-threads'; then
        threads=(--runtime-threads "${RAFTKV_RUNTIME_THREADS:-1}")
    fi
    "$RAFTKV" server --id "$id" --listen "127.0.0.1:$port" --peers "$peers" \
        --data-dir "$data" --log-level warn "${threads[@]}" "$@" >>"$data/node$id.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# start_raftkv_cluster DATA_ROOT P1 P2 P3 [extra flags]
# Sets RK_ENDPOINTS (comma-separated) and RK_PIDS (array).
start_raftkv_cluster() {
    local data="$1" p1="$2" p2="$3" p3="$4"
    shift 4
    local peers="1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3"
    RK_PIDS=()
    local i=1
    for p in "$p1" "$p2" "$p3"; do
        start_raftkv_node "$i" "$p" "$peers" "$data/raftkv" "$@"
        RK_PIDS+=("$LAST_PID")
        i=$((i + 1))
    done
    RK_ENDPOINTS="127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3"
}

ensure_etcd() {
    if command -v etcd >/dev/null 2>&1; then return; fi
    log "installing etcd-server from Debian's packages"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server >/dev/null
    # The package may start a system service on the default ports; we use our own.
    command -v etcd >/dev/null 2>&1 || { log "etcd not found after install"; exit 1; }
}

# start_etcd_cluster DATA_ROOT C1 C2 C3 Q1 Q2 Q3 (client ports, peer ports)
# fsync stays on and timing at etcd's defaults (100 ms heartbeat, 1 s election).
# Sets ETCD_ENDPOINTS and ETCD_PIDS.
start_etcd_cluster() {
    local data="$1"
    local c=("$2" "$3" "$4") q=("$5" "$6" "$7")
    local cluster="e1=http://127.0.0.1:${q[0]},e2=http://127.0.0.1:${q[1]},e3=http://127.0.0.1:${q[2]}"
    ETCD_PIDS=()
    mkdir -p "$data/etcd"
    for i in 0 1 2; do
        local n=$((i + 1))
        etcd --name "e$n" --data-dir "$data/etcd/e$n" \
            --listen-client-urls "http://127.0.0.1:${c[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${c[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${q[$i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${q[$i]}" \
            --initial-cluster "$cluster" --initial-cluster-token raftkv-bench \
            --initial-cluster-state new --logger zap --log-level warn \
            >>"$data/etcd/e$n.log" 2>&1 &
        PIDS+=("$!")
        ETCD_PIDS+=("$!")
    done
    ETCD_ENDPOINTS="127.0.0.1:${c[0]},127.0.0.1:${c[1]},127.0.0.1:${c[2]}"
}

join_by() { local IFS="$1"; shift; echo "$*"; }

# The field of a flat JSON object file (numbers and strings), via jq or python3.
json_get() {
    local file="$1" path="$2"
    if command -v jq >/dev/null 2>&1; then
        jq -r "$path" "$file"
    else
        python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].lstrip(".").split("."):
    v=v[k]
print(v)' "$file" "$path"
    fi
}
