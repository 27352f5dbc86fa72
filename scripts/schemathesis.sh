#!/usr/bin/env bash
# Schemathesis against the Catalog: every check (`--checks all`), every phase
# (examples, coverage, fuzzing, stateful), in two topologies, each a fresh
# process of the debug binary on a free port:
#
#   default         embedded SQLite (temporary file), HybridCache L1 only
#   postgres-redis  PostgreSQL (a scratch database) + HybridCache with Redis
#                   as L2 and backplane (a key prefix of its own)
#
# Usage: scripts/schemathesis.sh   (installs schemathesis from PyPI when
#                                   missing; needs PostgreSQL on 127.0.0.1:5432
#                                   with trust auth and Redis on 127.0.0.1:6379
#                                   for the second topology, as .ci/run starts)
#
# Environment, with defaults:
#   EXAMPLES=500      --max-examples per operation and phase
#   MODES="default postgres-redis"
#   BIN=target/debug/catalog   built with `cargo build -p catalog` if missing
#
# Exits non-zero when schemathesis reports any failure. The exit trap stops
# the services it started, drops its database, deletes its Redis keys and
# removes its temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${EXAMPLES:-500}
MODES=${MODES:-default postgres-redis}
BIN=${BIN:-target/debug/catalog}
PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
# DROP DATABASE IF EXISTS says NOTICE when there is nothing to drop.
export PGOPTIONS=--client-min-messages=warning
DATABASE=catalog_schemathesis_$$
REDIS_PREFIX="catalog-schemathesis-$$:"

log() { printf '\n==> %s\n' "$*"; }

if ! command -v st >/dev/null; then
    log "installing schemathesis"
    pip install --quiet --disable-pip-version-check schemathesis
fi
[ -x "$BIN" ] || cargo build -p catalog

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DATABASE" >/dev/null 2>&1 || true
    redis-cli -h 127.0.0.1 --scan --pattern "$REDIS_PREFIX*" 2>/dev/null |
        xargs -r redis-cli -h 127.0.0.1 unlink >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME VAR=VALUE...: runs the catalog on port 0 with those settings and
# sets PORT to the port it reports in its "listening" line.
start() {
    local name=$1
    shift
    env "$@" PORT=0 LOG="warn,catalog::app=info" "$BIN" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 600); do
        PORT=$(grep -o 'address=[0-9.]*:[0-9]*' "$tmp/$name.log" | head -n 1 | cut -d: -f2 || true)
        if [ -n "$PORT" ]; then return 0; fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "the catalog ($name) did not start:" >&2
    cat "$tmp/$name.log" >&2
    return 1
}

failed=0
for mode in $MODES; do
    case $mode in
    default)
        start "$mode" DATABASE_URL="sqlite://$tmp/catalog.db" CACHE=hybrid
        ;;
    postgres-redis)
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DATABASE" >/dev/null
        psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DATABASE" >/dev/null
        start "$mode" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DATABASE" \
            CACHE=hybrid REDIS_URL=redis://127.0.0.1:6379 INSTANCE_NAME="$REDIS_PREFIX"
        ;;
    *)
        echo "unknown mode $mode (default, postgres-redis)" >&2
        exit 2
        ;;
    esac
    log "schemathesis against $mode (port $PORT, $EXAMPLES examples)"
    # From the temporary directory: schemathesis keeps a cache where it runs.
    if ! (cd "$tmp" && st run "http://127.0.0.1:$PORT/openapi.json" \
        --checks all \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$EXAMPLES" \
        --request-timeout 10 \
        --seed 1); then
        failed=1
        echo "schemathesis reported failures against $mode; the service's log:" >&2
        tail -n 50 "$tmp/$mode.log" >&2
    fi
done
exit $failed
