#!/usr/bin/env bash
# One Catalog instance called directly (no balancer), server pinned to one
# core and wrk to the other, every endpoint in the same run: the figures of
# "Paging against a cache hit" in docs/benchmarks.md.
#
# Usage: scripts/bench-http.sh   (as root on Debian: installs wrk when
#                                 missing; builds the release binary first)
#
# Environment, with defaults:
#   ROUNDS=3          rounds over all endpoints; the report gives each
#                     round's req/s and their median, so that load that comes
#                     and goes on a shared machine hits every endpoint alike
#   DURATION=10       seconds of measured load per endpoint and round
#   WARMUP=3          seconds of unmeasured load before each measurement
#   CONNECTIONS=32    wrk connections (one wrk thread)
#   SERVER_CPU=0      the core the catalog runs on
#   WRK_CPU=1         the core wrk runs on
#   BIN               a catalog binary to measure instead of building
#                     target/release/catalog (to compare two builds)
#
# The instance runs the default topology (embedded SQLite in a temporary
# directory, HybridCache L1), seeded with 1,000 products, LOG=warn. Every
# endpoint is warmed first, so reads are L1 hits.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-32}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}

command -v wrk >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
}
if [ -z "${BIN:-}" ]; then
    cargo build --release -p catalog >&2
    BIN=target/release/catalog
fi

tmp=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

PORT=0 DATABASE_URL="sqlite://$tmp/catalog.db" LOG="warn,catalog::app=info" \
    taskset -c "$SERVER_CPU" "$BIN" >"$tmp/catalog.log" 2>&1 &
pid=$!
port=
for _ in $(seq 1 300); do
    port=$(grep -o 'address=[0-9.]*:[0-9]*' "$tmp/catalog.log" | head -n 1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || {
    cat "$tmp/catalog.log" >&2
    exit 1
}
base=http://127.0.0.1:$port
id=$(curl -fsS "$base/products?limit=1&offset=42" | grep -o '"id":"[^"]*"' | head -n 1 | cut -d'"' -f4)

endpoints=(
    "/health/live"
    "/products/$id"
    "/products?limit=20&offset=500"
    "/products?limit=1"
    "/products"
)

# CPU time (user + system, in clock ticks) the catalog process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
declare -A rps p99 cpu
for round in $(seq 1 "$ROUNDS"); do
    for path in "${endpoints[@]}"; do
        taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$base$path" >/dev/null
        before=$(cpu_ticks)
        out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$base$path")
        ticks=$(($(cpu_ticks) - before))
        errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
        [ -z "$errors" ] || echo "$path: $errors" >&2
        rps[$path]+="$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out") "
        p99[$path]=$(awk '$1 == "99%" {print $2}' <<<"$out")
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        cpu[$path]+="$(awk -v t="$ticks" -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') "
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
declare -A med medcpu
printf '| endpoint | req/s per round | median req/s | p99 (last round) | server CPU per request, per round | median | response bytes |\n'
printf '|---|---|---:|---:|---|---:|---:|\n'
for path in "${endpoints[@]}"; do
    med[$path]=$(median <<<"${rps[$path]}")
    medcpu[$path]=$(median <<<"${cpu[$path]}")
    bytes=$(curl -fsS "$base$path" | wc -c)
    shown=${path//$id/\{id\}}
    printf '| `GET %s` | %s | %s | %s | %s µs | %s µs | %s |\n' "$shown" "${rps[$path]% }" \
        "${med[$path]}" "${p99[$path]}" "${cpu[$path]% }" "${medcpu[$path]}" "$bytes"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# Ratios of req/s, and of requests per CPU second (the inverse of CPU per
# request), which load from other processes disturbs less.
ratios() {
    local a=${endpoints[$1]} b=${endpoints[$2]}
    echo "- $3: req/s $(ratio "${med[$a]}" "${med[$b]}")x," \
        "requests per CPU second $(ratio "${medcpu[$b]}" "${medcpu[$a]}")x"
}
echo
ratios 2 1 '`GET /products?limit=20&offset=500` / `GET /products/{id}`'
ratios 1 0 '`GET /products/{id}` / `GET /health/live`'
ratios 4 1 '`GET /products` / `GET /products/{id}`'

