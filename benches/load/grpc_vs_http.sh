#!/usr/bin/env bash
# gRPC ext_authz against the HTTP authz mode, in one run, on loopback: starts the release
# server on the embedded data (trusted_proxies 127.0.0.1/32, so the attribute context's
# source.address and X-Forwarded-For are the listener) and drives it with the tonic/hyper
# load client benches/grpc_load.rs:
#
#   benches/load/grpc_vs_http.sh
#
#   grpc   Authorization/Check on grpc_listen (HTTP/2, CONNS connections, many streams each)
#   h2c    GET /v1/authz/<path> over HTTP/2 cleartext on the public listener, same connections
#   http1  the same over HTTP/1.1 keep-alive, one connection per request in flight
#
# All modes keep INFLIGHT requests in flight for SECONDS seconds (after 2 s of warm-up each),
# cycling over the same 1000 listener addresses (benches/load/ips.txt). Prints a markdown
# table: requests/s, p50/p99 latency, the server's CPU time per request, the answers.
#
# Settings (environment): SECONDS_PER_MODE=10 INFLIGHT=64 CONNS=4 ROUNDS=1 (ROUNDS>1 repeats
# the modes and prints one table per round), RG_PORT=18180 RG_GRPC_PORT=18181
# RG_ADMIN_PORT=18190, KEEP=0 (1: keep the work directory with the server's log).
#
# The client and the server share the machine's cores: the figures compare the front doors
# under the same conditions, they are not the server's capacity.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECONDS_PER_MODE=${SECONDS_PER_MODE:-10}
INFLIGHT=${INFLIGHT:-64}
CONNS=${CONNS:-4}
ROUNDS=${ROUNDS:-1}
RG_PORT=${RG_PORT:-18180}
RG_GRPC_PORT=${RG_GRPC_PORT:-18181}
RG_ADMIN_PORT=${RG_ADMIN_PORT:-18190}
KEEP=${KEEP:-0}
IPS=${IPS:-$HERE/ips.txt}

die() {
    echo "grpc_vs_http.sh: $*" >&2
    exit 1
}
for t in curl cargo; do
    command -v "$t" >/dev/null || die "$t not found"
done
[ -s "$IPS" ] || die "$IPS missing (benches/load/make_ips.py writes it)"

WORK=$(mktemp -d /tmp/regiongate-grpc-load.XXXXXX)
RG_PID=""
cleanup() {
    if [ -n "$RG_PID" ] && kill -TERM "$RG_PID" 2>/dev/null; then
        for _ in $(seq 1 50); do
            kill -0 "$RG_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$RG_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build (cargo build --release, and the load client)"
(cd "$ROOT" && cargo build --release --quiet && cargo bench --no-run --quiet --bench grpc_load)

printf '[client]\ntrusted_proxies = ["127.0.0.1/32"]\n' >"$WORK/regiongate.toml"
RUST_LOG=warn "$ROOT/target/release/regiongate" serve --config "$WORK/regiongate.toml" \
    --listen "127.0.0.1:$RG_PORT" --grpc-listen "127.0.0.1:$RG_GRPC_PORT" \
    --admin-listen "127.0.0.1:$RG_ADMIN_PORT" 2>"$WORK/regiongate.log" &
RG_PID=$!
for p in "$RG_PORT" "$RG_GRPC_PORT" "$RG_ADMIN_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is in use (another server still running?)"
    fi
done
for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RG_ADMIN_PORT/readyz" || true)" = 200 ] && break
    kill -0 "$RG_PID" 2>/dev/null || die "regiongate exited: $(tail -5 "$WORK/regiongate.log")"
    sleep 0.1
done
kill -0 "$RG_PID" 2>/dev/null || die "regiongate exited: $(tail -5 "$WORK/regiongate.log")"
echo "== regiongate pid $RG_PID: public 127.0.0.1:$RG_PORT, gRPC 127.0.0.1:$RG_GRPC_PORT," \
    "$(curl -s "http://127.0.0.1:$RG_ADMIN_PORT/metrics" | grep '^regiongate_public_threads' || echo 'public threads unknown')"
echo "== $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$ROOT" rev-parse --short HEAD)"

for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r: $SECONDS_PER_MODE s per mode, $INFLIGHT in flight, $CONNS HTTP/2 connections"
    (cd "$ROOT" && cargo bench --quiet --bench grpc_load -- \
        --public "127.0.0.1:$RG_PORT" --grpc "127.0.0.1:$RG_GRPC_PORT" --ips "$IPS" \
        --seconds "$SECONDS_PER_MODE" --inflight "$INFLIGHT" --conns "$CONNS" --server-pid "$RG_PID")
done
