#!/usr/bin/env bash
# Instructions per auth subrequest, counted by valgrind's callgrind: a figure that does not
# move with other work on the machine, for comparing changes to the request path (and with
# nginx + geoip2 doing the equivalent gate) where wall-clock load figures are too noisy.
#
#   benches/load/callgrind.sh [regiongate|nginx] [ip|gps]
#
# Starts the server under `valgrind --tool=callgrind --instr-atstart=no` (nothing is counted
# while it loads its data), sends a warm-up, switches counting on, sends REQUESTS auth
# subrequests with wrk and benches/load/authz.lua (the same requests as authz_vs_nginx.sh,
# keep-alive, CONNS connections), switches counting off and prints instructions per request
# (everything the server process executed in that window, all threads: HTTP parsing, the
# decision, responses, the runtime, the allocator; not the kernel) and the functions with the
# most inclusive instructions.
#
# Settings (environment): REQUESTS=20000 CONNS=8 WARMUP_REQUESTS=2000, PORT=18380
# ADMIN_PORT=18390, RUST_LOG=warn (regiongate; info gives the decision log line per request),
# WORKERS (regiongate: its public threads, TOKIO_WORKER_THREADS, default one per core; nginx:
# always 1, one process with master_process off), NOBUILD=1 (use target/release/regiongate as it is), OUT=DIR (keep the
# callgrind output and the annotation there; default: a temporary directory, removed).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SERVER=${1:-regiongate}
MODE=${2:-ip}
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-8}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-2000}
PORT=${PORT:-18380}
ADMIN_PORT=${ADMIN_PORT:-18390}
IPS=$HERE/ips.txt

die() {
    echo "callgrind.sh: $*" >&2
    exit 1
}
for t in valgrind callgrind_control callgrind_annotate wrk curl; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install -y valgrind wrk curl)"
done
case "$MODE" in ip | gps) ;; *) die "mode is ip or gps" ;; esac

KEEP_OUT=1
if [ -z "${OUT:-}" ]; then
    OUT=$(mktemp -d /tmp/regiongate-callgrind.XXXXXX)
    KEEP_OUT=0
fi
mkdir -p "$OUT"
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    [ "$KEEP_OUT" = 1 ] || rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
    local code
    for _ in $(seq 1 1200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
        [ "$code" = 200 ] && return 0
        kill -0 "$PID" 2>/dev/null || die "the server exited (see $OUT/server.stderr)"
        sleep 0.5
    done
    die "$1 did not answer 200"
}

VG=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out")
case "$SERVER" in
    regiongate)
        if [ "${NOBUILD:-0}" != 1 ]; then
            (cd "$ROOT" && cargo build --release --quiet)
        fi
        printf '[client]\ntrusted_proxies = ["127.0.0.1/32"]\n' >"$OUT/regiongate.toml"
        [ -n "${WORKERS:-}" ] && export TOKIO_WORKER_THREADS=$WORKERS
        RUST_LOG=${RUST_LOG:-warn} "${VG[@]}" "$ROOT/target/release/regiongate" serve \
            --config "$OUT/regiongate.toml" --listen "127.0.0.1:$PORT" \
            --admin-listen "127.0.0.1:$ADMIN_PORT" >"$OUT/server.stdout" 2>"$OUT/server.stderr" &
        PID=$!
        wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
        ;;
    nginx)
        [ "$MODE" = ip ] || die "the nginx gate reads no Geo-Hint"
        mkdir -p "$OUT/nginx/logs" "$OUT/nginx/tmp"
        sed -e "s|__LISTEN__|127.0.0.1:$PORT|" -e "s|__MMDB__|$ROOT/regions/ip/geoip.mmdb|" \
            -e "s|__WORKERS__|1|" "$HERE/nginx-gate.conf" >"$OUT/nginx/gate.conf"
        "${VG[@]}" "$(command -v nginx || echo /usr/sbin/nginx)" -c "$OUT/nginx/gate.conf" \
            -p "$OUT/nginx/" -g "daemon off; master_process off; pid $OUT/nginx/nginx.pid;" \
            >"$OUT/server.stdout" 2>"$OUT/server.stderr" &
        PID=$!
        for _ in $(seq 1 600); do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/authz" || true)
            [ "$code" != 000 ] && break
            sleep 0.5
        done
        ;;
    *) die "server is regiongate or nginx" ;;
esac

URL="http://127.0.0.1:$PORT/v1/authz"
wrk_n() {
    # $1: requests, $2: output file. authz.lua stops its thread after $1 responses and writes
    # a line to stderr; wrk's clock runs on (-d), so interrupt it then (it prints its figures).
    : >"$OUT/wrk.stderr"
    wrk -t1 -c"$CONNS" -d3600s --timeout 60s -s "$HERE/authz.lua" "$URL" -- "$IPS" "$MODE" "$1" \
        >"$2" 2>"$OUT/wrk.stderr" &
    local w=$!
    until grep -q 'authz.lua: done' "$OUT/wrk.stderr"; do
        kill -0 "$w" 2>/dev/null || die "wrk exited early: $(cat "$OUT/wrk.stderr")"
        sleep 0.2
    done
    kill -INT "$w"
    wait "$w" || true
}
wrk_n "$WARMUP_REQUESTS" /dev/null
callgrind_control -i on "$PID" >/dev/null
wrk_n "$REQUESTS" "$OUT/wrk.txt"
callgrind_control -i off "$PID" >/dev/null
callgrind_control -d "$PID" >/dev/null
sleep 1
n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$OUT/wrk.txt")
non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$OUT/wrk.txt")
# The dump (callgrind.out.1; all threads together) holds the counting window.
callgrind_annotate --inclusive=yes "$OUT/callgrind.out.1" >"$OUT/annotate.txt" 2>&1 || true
ir=$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$OUT/annotate.txt" | tr -d ,)
[ -n "$ir" ] || die "no totals in the callgrind dump (see $OUT/annotate.txt)"
echo "$SERVER $MODE: $n requests (non-2xx: ${non2xx:-0}), $ir instructions, $((ir / n)) per request"
grep -E '^ *[0-9,]+ \(' "$OUT/annotate.txt" | sed -n "2,$((${TOP:-40} + 1))p"
