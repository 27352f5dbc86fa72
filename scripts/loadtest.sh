#!/usr/bin/env bash
# HTTP load test of the catalog.
#
# For each cache mode, starts INSTANCES catalog processes against one
# PostgreSQL database (1,000 seeded products) and one Redis, puts nginx in
# front of them (round robin), drives GET /products/{id} (a random seeded id
# per request) and GET /products (the full list) with wrk for DURATION
# seconds after a WARMUP, and writes req/s, p50, p99 and errors per mode into
# the "HTTP load test" section of docs/benchmarks.md and a chart
# into docs/loadtest.svg.
#
# Usage: scripts/loadtest.sh   (as root on Debian: installs wrk and nginx when
#                               missing, starts PostgreSQL and Redis when down)
#
# Environment, with defaults:
#   DURATION=20       seconds of measured load per mode and endpoint
#   WARMUP=3          seconds of unmeasured load before each measurement
#   CONNECTIONS=32    wrk connections
#   THREADS           wrk threads; default: the CPUs wrk may use
#   MODES="none redis hybrid"   cache modes, in order; the report compares
#                     every mode with none
#   INSTANCES=3       catalog instances per mode, all behind nginx
#   PIN=1             1: wrk on the last CPU, catalog and nginx on the others
#                     (PostgreSQL and Redis stay unpinned); 0: no pinning
#   WRITE_DOCS=1      0: print the table only, leave docs/ alone
#   QUIET_WAIT=180    before each scenario, wait up to this many seconds for
#                     the machine to be under 15% busy with others' work
#
# Every mode runs the same number of instances behind the same balancer, so
# the cache is the only difference. Traffic stays on 127.0.0.1, ports are
# picked free, every wait is bounded, and the exit trap stops what the script
# started, deletes its Redis keys and database, and removes its temp dir.
set -euo pipefail

cd "$(dirname "$0")/.."
HELPERS=scripts/loadtest

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-32}
MODES=${MODES:-none redis hybrid}
INSTANCES=${INSTANCES:-3}
PIN=${PIN:-1}
WRITE_DOCS=${WRITE_DOCS:-1}
QUIET_WAIT=${QUIET_WAIT:-180}
QUIET_BUSY=15

PG_HOST=127.0.0.1 PG_PORT=5432
REDIS_HOST=127.0.0.1 REDIS_PORT=6379
REDIS_URL_FOR_CATALOG=redis://$REDIS_HOST:$REDIS_PORT
DATABASE=catalog_loadtest
DATABASE_URL_FOR_CATALOG=postgres://postgres@$PG_HOST:$PG_PORT/$DATABASE
# Per-request logging would cost every mode alike but measure the logger.
CATALOG_LOG=warn
# The same id sequence for every mode.
LUA_SEED=1

log() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'loadtest: %s\n' "$*" >&2
    exit 1
}

for n in DURATION WARMUP CONNECTIONS INSTANCES QUIET_WAIT; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done

# --- what the machine lacks -------------------------------------------------

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

missing=()
need() { command -v "$1" >/dev/null || missing+=("$2"); }
need wrk wrk
need nginx nginx
need curl curl
need python3 python3
need taskset util-linux
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

wait_for() { # wait_for <what> <command...>: poll up to 30 s
    local what=$1
    shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not become ready"
}

# PostgreSQL and Redis as .ci/run has them: start what is not running.
ensure_redis() {
    command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server; }
    if ! redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
        log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
        wait_for "redis" sh -c "redis-cli -h $REDIS_HOST -p $REDIS_PORT ping | grep -q PONG"
    fi
}

psql_ok() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atc 'select 1' 2>/dev/null | grep -q 1; }

ensure_postgres() {
    command -v pg_ctlcluster >/dev/null || { log "installing postgresql"; apt_install postgresql postgresql-client; }
    if ! pg_isready -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; then
        log "starting postgresql"
        local version
        version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        wait_for "postgresql" pg_isready -h "$PG_HOST" -p "$PG_PORT"
    fi
    if ! psql_ok; then
        log "allowing trust authentication for postgres on 127.0.0.1"
        local hba
        hba=$(su postgres -c "psql -Atc 'show hba_file'")
        sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        su postgres -c "psql -c 'select pg_reload_conf()'" >/dev/null
        wait_for "postgresql trust auth" psql_ok
    fi
}

ensure_redis
ensure_postgres

# --- CPUs ---------------------------------------------------------------------

NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    WRK_PIN=(taskset -c "$((NCPU - 1))")
    SERVER_CPUS=0
    [ "$NCPU" -gt 2 ] && SERVER_CPUS="0-$((NCPU - 2))"
    SERVER_PIN=(taskset -c "$SERVER_CPUS")
    THREADS=${THREADS:-1}
    NGINX_WORKERS=$((NCPU - 1))
    PINNING="wrk pinned to CPU $((NCPU - 1)); the catalog instances and nginx to CPU $SERVER_CPUS; PostgreSQL and Redis unpinned"
else
    WRK_PIN=()
    SERVER_PIN=()
    THREADS=${THREADS:-$NCPU}
    NGINX_WORKERS=$NCPU
    PINNING="no CPU pinning: wrk, nginx, the instances, PostgreSQL and Redis share all $NCPU CPUs"
fi
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, not '$THREADS'"
[ "$CONNECTIONS" -ge "$THREADS" ] || die "CONNECTIONS ($CONNECTIONS) must be at least THREADS ($THREADS)"

COMMAND="DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS MODES='$MODES' INSTANCES=$INSTANCES PIN=$PIN scripts/loadtest.sh"

# --- state and cleanup --------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/catalog-loadtest.XXXXXX")
# nginx workers drop root; they must be able to reach the nginx directory.
chmod 755 "$TMP"
INSTANCE_PIDS=()
INSTANCE_PORTS=()
NGINX_PID=""
WRK_PID=""
PREFIXES=()
DB_CREATED=0

stop_pid() { # stop_pid <pid>: TERM, up to 10 s, then KILL
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_servers() {
    [ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
    NGINX_PID=""
    local pid
    for pid in "${INSTANCE_PIDS[@]}"; do stop_pid "$pid"; done
    INSTANCE_PIDS=()
    INSTANCE_PORTS=()
}

redis() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

flush_prefix() { # SCAN + DEL of one INSTANCE_NAME prefix: never FLUSHALL, Redis may be shared
    redis --scan --pattern "$1*" | xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null
}

psql_admin() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$WRK_PID" ]; then
        pkill -P "$WRK_PID" 2>/dev/null || true
        stop_pid "$WRK_PID"
    fi
    stop_servers
    local p
    for p in "${PREFIXES[@]}"; do flush_prefix "$p" || true; done
    if [ "$DB_CREATED" = 1 ]; then
        psql_admin -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ------------------------------------------------------------------

free_ports() { # free_ports <n>: n distinct free TCP ports on 127.0.0.1
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_ready() { # wait_ready <url> <pid> <log>: poll up to 60 s for a 200
    local url=$1 pid=$2 logfile=$3
    for _ in $(seq 1 120); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "the process behind $url exited (log above)"
        fi
        if curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    tail -n 30 "$logfile" >&2 || true
    die "$url did not answer 200 within 60 s (log above)"
}

start_instance() { # start_instance <mode> <port> <prefix> <seed true|false>
    local mode=$1 port=$2 prefix=$3 seed=$4
    local logfile=$TMP/catalog-$mode-$port.log
    local vars=(CACHE="$mode" PORT="$port" DATABASE_URL="$DATABASE_URL_FOR_CATALOG"
        INSTANCE_NAME="$prefix" LOG="$CATALOG_LOG" SEED="$seed")
    case $mode in
        redis | hybrid) vars+=(REDIS_URL="$REDIS_URL_FOR_CATALOG") ;;
    esac
    "${SERVER_PIN[@]}" env -u REDIS_URL "${vars[@]}" "$BIN" >"$logfile" 2>&1 &
    INSTANCE_PIDS+=("$!")
    INSTANCE_PORTS+=("$port")
}

start_nginx() { # start_nginx <port>: round robin over INSTANCE_PORTS
    local port=$1 dir=$TMP/nginx servers="" p
    mkdir -p "$dir"
    for p in "${INSTANCE_PORTS[@]}"; do servers+="        server 127.0.0.1:$p;"$'\n'; done
    local user=""
    [ "$(id -u)" = 0 ] && user="user www-data;"
    cat >"$dir/nginx.conf" <<EOF
$user
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream catalog {
$servers        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://catalog;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # A failed request is an error of its mode, not retried elsewhere.
            proxy_next_upstream off;
            # The full list is a few hundred KiB: keep it in memory.
            proxy_buffer_size 16k;
            proxy_buffers 64 16k;
            proxy_busy_buffers_size 32k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    "${SERVER_PIN[@]}" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    wait_ready "http://127.0.0.1:$port/health/ready" "$NGINX_PID" "$dir/error.log"
}

metric_sum() { # metric_sum <name> [label filter]: summed over the running instances
    local name=$1 filter=${2:-} p total=0 v
    for p in "${INSTANCE_PORTS[@]}"; do
        v=$(curl -fsS --max-time 5 "http://127.0.0.1:$p/metrics" |
            awk -v n="$name" -v f="$filter" \
                '(index($1, n "{") == 1 || $1 == n) && index($1, f) { s += $NF } END { printf "%d\n", s }')
        total=$((total + v))
    done
    echo "$total"
}

instance_requests() { # requests each instance served on /products routes, space-separated
    local p counts=()
    for p in "${INSTANCE_PORTS[@]}"; do
        counts+=("$(curl -fsS --max-time 5 "http://127.0.0.1:$p/metrics" |
            awk 'index($1, "http_requests_total{") == 1 && index($1, "route=\"/products") { s += $NF } END { printf "%d\n", s }')")
    done
    echo "${counts[*]}"
}

count_warnings() { # count_warnings <mode>: WARN and ERROR lines in its instances' logs
    cat "$TMP"/catalog-"$1"-*.log | grep -cE ' (WARN|ERROR) ' || true
}

machine_busy() { # machine_busy: percent of all CPUs busy over 2 s
    python3 "$HELPERS/cpu.py" snap "" "" >"$TMP/busy-before.json"
    sleep 2
    python3 "$HELPERS/cpu.py" snap "" "" >"$TMP/busy-after.json"
    python3 -c 'import json, sys; d = json.loads(sys.argv[1])["busy_pct"]; print(round(sum(d.values()) / len(d)))' \
        "$(python3 "$HELPERS/cpu.py" diff "$TMP/busy-before.json" "$TMP/busy-after.json")"
}

wait_quiet() { # before a scenario, while ours idle: wait up to QUIET_WAIT s for others' work to end
    local busy start=$SECONDS
    busy=$(machine_busy)
    while [ "$busy" -gt "$QUIET_BUSY" ]; do
        if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
            echo "    machine still ${busy}% busy after ${QUIET_WAIT} s: measuring anyway (see 'other' in the report)"
            return 0
        fi
        echo "    machine ${busy}% busy with other work: waiting (up to ${QUIET_WAIT} s)"
        sleep 3
        busy=$(machine_busy)
    done
}

cpu_snap() { # where the cores go: see scripts/loadtest/cpu.py
    local IFS=,
    python3 "$HELPERS/cpu.py" snap "${INSTANCE_PIDS[*]}" "$NGINX_PID"
}

run_wrk() { # run_wrk <label> <seconds> <out> <wrk args...>: wrk with a countdown
    local label=$1 secs=$2 out=$3
    shift 3
    # A subshell, so that `times` can report wrk's CPU time afterwards.
    (
        rc=0
        "${WRK_PIN[@]}" wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "${secs}s" --timeout 5s "$@" >"$out" 2>&1 || rc=$?
        times >"$out.times"
        exit "$rc"
    ) &
    WRK_PID=$!
    local start=$SECONDS left
    while kill -0 "$WRK_PID" 2>/dev/null; do
        left=$((secs - (SECONDS - start)))
        if [ "$left" -lt -30 ]; then die "wrk ran 30 s past its duration"; fi
        if [ -t 1 ]; then
            printf '\r    %-44s %3d s left ' "$label" "$((left > 0 ? left : 0))"
        elif [ $(((SECONDS - start) % 5)) = 0 ]; then
            printf '    %s: %d s left\n' "$label" "$((left > 0 ? left : 0))"
        fi
        sleep 1
    done
    [ -t 1 ] && printf '\r%70s\r' ''
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    [ "$rc" = 0 ] || { cat "$out" >&2; die "wrk failed ($label)"; }
}

# --- build and seed -----------------------------------------------------------

log "cargo build --release -p catalog"
cargo build --release -p catalog
BIN=${CARGO_TARGET_DIR:-target}/release/catalog
[ -x "$BIN" ] || die "no binary at $BIN"

log "database $DATABASE: drop, create, seed"
psql_admin -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)"
psql_admin -c "CREATE DATABASE $DATABASE"
DB_CREATED=1
# One instance seeds alone, so that concurrent first starts cannot race.
read -r seed_port < <(free_ports 1)
start_instance none "$seed_port" "loadtest-$$-seed:" true
wait_ready "http://127.0.0.1:$seed_port/health/ready" "${INSTANCE_PIDS[0]}" "$TMP/catalog-none-$seed_port.log"
curl -fsS --max-time 30 "http://127.0.0.1:$seed_port/products" |
    python3 -c 'import json, sys; print("\n".join(p["id"] for p in json.load(sys.stdin)))' >"$TMP/ids.txt"
stop_servers
mv "$TMP/catalog-none-$seed_port.log" "$TMP/seed.log"
PRODUCTS=$(wc -l <"$TMP/ids.txt")
[ "$PRODUCTS" -gt 0 ] || die "the catalog seeded no products"
echo "    $PRODUCTS products; ids in $TMP/ids.txt"

versions="wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), $(nginx -v 2>&1 | sed 's/.*nginx\//nginx /'),"
versions+=" PostgreSQL $(psql_admin -Atc 'show server_version' | awk '{ print $1 }'),"
versions+=" Redis $(redis info server | awk -F: '/^redis_version/ { print $2 }' | tr -d '\r')"

# Other work on the machine skews every figure; say so rather than hide it.
cpu_snap >"$TMP/cpu-before.json"
sleep 3
cpu_snap >"$TMP/cpu-after.json"
idle_busy=$(python3 -c 'import json, sys; d = json.loads(sys.argv[1])["busy_pct"]; print(", ".join(f"{k} {v}%" for k, v in d.items()))' \
    "$(python3 "$HELPERS/cpu.py" diff "$TMP/cpu-before.json" "$TMP/cpu-after.json")")
echo "    CPU busy before the load (3 s sample, nothing of ours running): $idle_busy"

# --- the modes ----------------------------------------------------------------

RESULTS=$TMP/results.jsonl
: >"$RESULTS"
read -r -a modes <<<"$MODES"
step=0
for mode in "${modes[@]}"; do
    step=$((step + 1))
    prefix="loadtest-$$-$mode:"
    PREFIXES+=("$prefix")
    flush_prefix "$prefix"
    log "[$step/${#modes[@]}] CACHE=$mode: $INSTANCES instances behind nginx"
    read -r -a ports < <(free_ports "$((INSTANCES + 1))")
    lb_port=${ports[$INSTANCES]}
    for ((i = 0; i < INSTANCES; i++)); do
        start_instance "$mode" "${ports[$i]}" "$prefix" false
    done
    for ((i = 0; i < INSTANCES; i++)); do
        wait_ready "http://127.0.0.1:${ports[$i]}/health/ready" "${INSTANCE_PIDS[$i]}" \
            "$TMP/catalog-$mode-${ports[$i]}.log"
    done
    start_nginx "$lb_port"
    ready=$(curl -fsS --max-time 5 "http://127.0.0.1:$lb_port/health/ready")
    topology=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("cache", "?"))' "$ready")
    echo "    balancer 127.0.0.1:$lb_port -> ${INSTANCE_PORTS[*]}; readiness: $ready"

    for endpoint in '/products/{id}' '/products'; do
        if [ "$endpoint" = '/products' ]; then
            target=("http://127.0.0.1:$lb_port/products")
        else
            target=(-s "$HELPERS/random_id.lua" "http://127.0.0.1:$lb_port" -- "$TMP/ids.txt" "$LUA_SEED")
        fi
        wait_quiet
        run_wrk "$mode GET $endpoint warm-up" "$WARMUP" "$TMP/warmup.txt" "${target[@]}"
        warnings_before=$(count_warnings "$mode")
        reads_before=$(metric_sum catalog_db_loads_total)
        split_before=$(instance_requests)
        out=$TMP/wrk-$mode-${endpoint//[^a-z]/_}.txt
        cpu_snap >"$TMP/cpu-before.json"
        run_wrk "$mode GET $endpoint" "$DURATION" "$out" "${target[@]}"
        cpu_snap >"$TMP/cpu-after.json"
        # The second line of `times`: CPU time of the subshell's child, wrk.
        wrk_cpu=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }' "$out.times")
        cpu=$(python3 "$HELPERS/cpu.py" diff "$TMP/cpu-before.json" "$TMP/cpu-after.json" "$wrk_cpu")
        reads=$(($(metric_sum catalog_db_loads_total) - reads_before))
        read -r -a a <<<"$split_before"
        read -r -a b <<<"$(instance_requests)"
        split=""
        for ((i = 0; i < INSTANCES; i++)); do split+="$((b[i] - a[i])) "; done
        warnings=$(($(count_warnings "$mode") - warnings_before))
        extra=$(printf '{"db_reads": %d, "cache": "%s", "per_instance": [%s], "log_warnings": %d, "cpu": %s}' \
            "$reads" "$topology" "$(echo "$split" | xargs | tr ' ' ',')" "$warnings" "$cpu")
        python3 "$HELPERS/parse_wrk.py" "$out" "$mode" "$endpoint" "$extra" >>"$RESULTS"
        sed -n '/Latency Distribution/,$p' "$out" | sed 's/^/    /'
        echo "    requests per instance: $split; database reads: $reads; warnings in instance logs: $warnings"
        echo "    CPU over the run: $cpu"
    done
    stop_servers
    flush_prefix "$prefix"
done

# --- report -------------------------------------------------------------------

SETUP="Setup: $INSTANCES catalog instances per mode (release build, \`LOG=$CATALOG_LOG\`) behind nginx (round robin, keep-alive to the instances, no retry to another instance: a failed request counts as an error), one PostgreSQL database with $PRODUCTS seeded products, one Redis. $versions. Load: wrk, $THREADS thread(s), $CONNECTIONS connections, $DURATION s per mode and endpoint after a $WARMUP s warm-up (the cached modes are measured warm: mostly hits). CPU: $PINNING; busy before the load, with nothing of the test running: $idle_busy. Built from \`$(git describe --always --dirty 2>/dev/null || echo unknown)\`."

log "results"
report_args=(--results "$RESULTS" --docs docs/benchmarks.md --svg docs/loadtest.svg
    --command "$COMMAND" --setup "$SETUP")
[ "$WRITE_DOCS" = 1 ] || report_args+=(--no-write)
python3 "$HELPERS/report.py" "${report_args[@]}"
