#!/usr/bin/env bash
# Soak: the release binary on a copy of regions/, for DURATION, on loopback only, under
#
#   * valid traffic on every front door (wrk, benches/soak/mix.lua): preflight GET and POST,
#     territory, nginx- and Envoy-style auth subrequests, the reverse proxy (an nginx origin,
#     or soak.py's if nginx is missing), over 15 clients (addresses from benches/load/ips.txt,
#     some with GPS hints, one with an implausible hint, two with private addresses) and 4
#     tracks;
#   * a verification client that asks every front door about every (client, track) in turn and
#     compares each answer with an oracle: `regiongate check` run on the same data before the
#     soak, for both data versions (the answer's x-regiongate-version says which one decided);
#   * bad input of 30 kinds (malformed hints, forwarding headers, bodies, headers, requests);
#   * 50 slowloris clients (a header byte every 200 ms) and 50 idle ones, reconnecting;
#   * the data flipping between two versions every FLIP_EVERY seconds (B moves a track to other
#     territories and takes another down), by the directory watcher, POST /admin/reload and
#     SIGHUP in turn, and every fourth time a broken licence file that must be refused;
#
# then reports requests served, the answer mix, latency percentiles, peak memory (VmRSS and
# VmHWM sampled every second), panics in the log (must be 0), wrong decisions (must be 0), and
# the exit status after SIGTERM (must be 0). Exit status 1 if any of those fail.
#
#   benches/soak/soak.sh                      # 5 minutes
#   DURATION=180 benches/soak/soak.sh         # 3 minutes
#
# Settings (environment): DURATION=300 (seconds of load), FLIP_EVERY=10, WRK_THREADS=1,
# WRK_CONNS=16, RG_PORT=18480 RG_ADMIN_PORT=18490 ORIGIN_PORT=18470, KEEP=0 (1: keep the work
# directory: logs, wrk output, JSON results, report.txt), IPS=benches/load/ips.txt.
#
# Needs: cargo, wrk, python3, curl; nginx optional. Before the load: a release build and the
# oracle (120 runs of `regiongate check`: 1 to 3 minutes on 2 cores, then cached in
# ~/.cache/regiongate-soak for the same binary and data).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-300}
FLIP_EVERY=${FLIP_EVERY:-10}
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNS=${WRK_CONNS:-16}
RG_PORT=${RG_PORT:-18480}
RG_ADMIN_PORT=${RG_ADMIN_PORT:-18490}
ORIGIN_PORT=${ORIGIN_PORT:-18470}
KEEP=${KEEP:-0}
IPS=${IPS:-$ROOT/benches/load/ips.txt}
PY=python3

die() {
    echo "soak.sh: $*" >&2
    exit 1
}

for t in wrk curl python3 cargo; do
    command -v "$t" >/dev/null || die "$t not found"
done
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx

WORK=$(mktemp -d /tmp/regiongate-soak.XXXXXX)
RG_PID=""
ORIGIN_PID=""
HELPERS=()

stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    for p in "${HELPERS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    stop_pid "$RG_PID"
    stop_pid "$ORIGIN_PID"
    wait 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
    local code
    for _ in $(seq 1 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    die "$2 did not come up ($1)"
}

echo "== build (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
BIN=$ROOT/target/release/regiongate

echo "== data: A = a copy of regions/, B = A + licenses/soak-flip.toml; the live directory starts as A"
$PY "$HERE/soak.py" prepare "$WORK" "$IPS"
cp -r "$ROOT/regions" "$WORK/A"
cp -r "$ROOT/regions" "$WORK/B"
cp "$WORK/soak-flip.toml" "$WORK/B/licenses/soak-flip.toml"
cp -r "$WORK/A" "$WORK/data"
"$BIN" validate "$WORK/B" >/dev/null || die "data B does not validate"

echo "== oracle: regiongate check on A and B for every (client, track)"
$PY "$HERE/soak.py" oracle "$WORK" "$BIN"

echo "== origin on 127.0.0.1:$ORIGIN_PORT"
if [ -n "$NGINX" ]; then
    mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
    cat >"$WORK/nginx/origin.conf" <<EOF
worker_processes 1;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { default_type audio/mp4; return 200 "origin\n"; }
    }
}
EOF
    "$NGINX" -c "$WORK/nginx/origin.conf" -p "$WORK/nginx/" -g "daemon off; pid $WORK/nginx/nginx.pid;" \
        2>"$WORK/nginx/stderr" &
    ORIGIN_PID=$!
    echo "   nginx"
else
    $PY "$HERE/soak.py" origin "$ORIGIN_PORT" &
    ORIGIN_PID=$!
    echo "   soak.py origin (no nginx found)"
fi

cat >"$WORK/regiongate.toml" <<EOF
mode = "proxy"
regions = "$WORK/data"
watch = true

[client]
trusted_proxies = ["127.0.0.1/32"]

[hints]
# wrk's requests are built once, with the start time in their Geo-Hint.
max_age_s = 86400

[authz]
default_use = "on_demand_stream"
default_tier = "premium"

[proxy]
upstream = "http://127.0.0.1:$ORIGIN_PORT"

[limits]
header_read_timeout_ms = 2000
EOF

echo "== regiongate serve (release, proxy mode, RUST_LOG=warn) on 127.0.0.1:$RG_PORT, admin :$RG_ADMIN_PORT"
RUST_LOG=warn "$BIN" serve --config "$WORK/regiongate.toml" \
    --listen "127.0.0.1:$RG_PORT" --admin-listen "127.0.0.1:$RG_ADMIN_PORT" 2>"$WORK/regiongate.log" &
RG_PID=$!
wait_http "http://127.0.0.1:$RG_ADMIN_PORT/readyz" regiongate
curl -s -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/" || die "the origin does not answer"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
UNTIL=$((START + DURATION))
echo "== soak: ${DURATION} s from $(date -u +%H:%M:%S) UTC (load average $LOAD_BEFORE)"
$PY "$HERE/soak.py" mem "$WORK" "$RG_PID" "$UNTIL" &
HELPERS+=($!)
$PY "$HERE/soak.py" verify "$WORK" "$RG_PORT" "$UNTIL" &
HELPERS+=($!)
$PY "$HERE/soak.py" bad "$WORK" "$RG_PORT" "$UNTIL" &
HELPERS+=($!)
$PY "$HERE/soak.py" slow "$WORK" "$RG_PORT" "$UNTIL" &
HELPERS+=($!)
$PY "$HERE/soak.py" flip "$WORK" "$RG_ADMIN_PORT" "$RG_PID" "$UNTIL" "$FLIP_EVERY" &
HELPERS+=($!)
SOAK_WRK_OUT="$WORK/wrk.json" timeout $((DURATION + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" \
    -d"${DURATION}s" --timeout 5s -s "$HERE/mix.lua" "http://127.0.0.1:$RG_PORT" -- "$WORK/requests.txt" \
    >"$WORK/wrk.txt" || die "wrk failed: $(cat "$WORK/wrk.txt")"
for p in "${HELPERS[@]}"; do
    wait "$p" || die "a soak.py part failed (pid $p)"
done
HELPERS=()
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

METRICS=$(curl -s "http://127.0.0.1:$RG_ADMIN_PORT/metrics")
RELOADS_OK=$(echo "$METRICS" | awk '/^regiongate_reloads_total\{result="ok"\}/ {print $2}')
RELOADS_FAILED=$(echo "$METRICS" | awk '/^regiongate_reloads_total\{result="failed"\}/ {print $2}')

echo "== SIGTERM"
kill -TERM "$RG_PID"
EXIT=""
for _ in $(seq 1 200); do
    if ! kill -0 "$RG_PID" 2>/dev/null; then
        set +e
        wait "$RG_PID"
        EXIT=$?
        set -e
        break
    fi
    sleep 0.1
done
RG_PID=""
PANICS=$(grep -c "panicked" "$WORK/regiongate.log" || true)
cat >"$WORK/run.json" <<EOF
{"duration_s": $DURATION, "load_before": "$LOAD_BEFORE", "load_after": "$LOAD_AFTER",
 "reloads": {"ok": ${RELOADS_OK:-0}, "failed": ${RELOADS_FAILED:-0}},
 "panics": $PANICS, "exit": ${EXIT:-null}}
EOF

echo "== report"
$PY "$HERE/soak.py" report "$WORK"
