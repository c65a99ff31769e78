#!/usr/bin/env bash
# The played-track workload of issue 15, on loopback: listeners play a track as a player does
# (one preflight, then 60 segment requests through nginx), in one run:
#
#   auth-request   (a) nginx asks regiongate per segment (auth_request, as deploy/nginx/nginx.conf)
#   secure-link    (b) segment URLs carry the preflight's secure_link grant; nginx checks it alone
#                      (as deploy/nginx/grants.conf)
#   hmac-grant     (c) segment URLs carry the preflight's HMAC grant; nginx still asks regiongate
#                      (auth_request), whose fast path checks the signature instead of deciding
#   hmac-cached    (c) with nginx caching regiongate's 200 for a grant for 10 s, keyed by track
#                      and grant only (no address: the grant is the whole question), so
#                      regiongate sees one subrequest per grant and 10 s, not one per segment
#   ungated        nginx serving the same 61 requests (the preflight as a static file) with no gate
#
# The preflight of (a), (b), (c) goes through nginx to regiongate. Segments are small static
# files served by nginx itself (the origin is not what is measured). The listener's address
# is DE (193.99.144.80, the embedded database) in an X-Listener header that nginx passes as
# X-Forwarded-For; the track QZNW52400010 is licensed there, so every decision allows.
#
# Prints per mode: requests/s, played tracks/s, the ratio to ungated nginx, and regiongate's
# CPU time per played track (utime + stime of its process, /proc/PID/stat), with (a)/(c).
#
#   benches/load/played_track.sh
#   DURATION=10s CONNS=32 THREADS=2 NGINX_PORT=18380 RG_PORT=18391 RG_ADMIN_PORT=18392 KEEP=0
#
# Needs: cargo, nginx, wrk, curl, python3. Everything shares the machine's cores: a
# comparison made under the same conditions, not a capacity figure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
NGINX_PORT=${NGINX_PORT:-18380}
RG_PORT=${RG_PORT:-18391}
RG_ADMIN_PORT=${RG_ADMIN_PORT:-18392}
KEEP=${KEEP:-0}
TRACK=QZNW52400010
LISTENER=193.99.144.80

die() { echo "played_track.sh: $*" >&2; exit 1; }
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
[ -n "$NGINX" ] || die "nginx not found"
for t in wrk curl python3 cargo; do command -v "$t" >/dev/null || die "$t not found"; done

WORK=$(mktemp -d /tmp/regiongate-played.XXXXXX)
# nginx workers (run as nobody when started as root) read the segments from here.
chmod 755 "$WORK"
NGINX_PID=""
RG_PID=""
stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$RG_PID"; stop "$NGINX_PID"; wait 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
BIN=$ROOT/target/release/regiongate

# Keys, regiongate config.
mkdir -p "$WORK/keys" "$WORK/logs" "$WORK/tmp" "$WORK/root/audio/$TRACK" "$WORK/root/v1/tracks/$TRACK"
head -c 32 /dev/urandom | base64 > "$WORK/keys/k1.hmac"
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$SECRET" > "$WORK/keys/n1.secure-link"
cat > "$WORK/regiongate.toml" <<TOML
listen = "127.0.0.1:$RG_PORT"
admin_listen = "127.0.0.1:$RG_ADMIN_PORT"
[client]
trusted_proxies = ["127.0.0.1/32"]
[grants]
keys_dir = "$WORK/keys"
ttl_s = 3600
TOML
# The segments (1 KiB each) and the ungated preflight answer.
for n in $(seq 0 59); do head -c 1024 /dev/zero > "$WORK/root/audio/$TRACK/seg-$n.mp4"; done
echo '{"decision":"allow"}' > "$WORK/root/v1/tracks/$TRACK/playability"

P=$NGINX_PORT
cat > "$WORK/nginx.conf" <<NGINX
worker_processes auto;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path tmp/client_body; proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    upstream regiongate { server 127.0.0.1:$RG_PORT; keepalive 64; }
    map \$arg_rg_kid \$rg_secret { default ""; n1 "$SECRET"; }
    # (a) and (c): auth_request per segment (the HMAC grant, when present, rides in the URI).
    server {
        listen 127.0.0.1:$((P + 0));
        root $WORK/root;
        location /v1/ {
            proxy_pass http://regiongate; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$http_x_listener;
        }
        location /audio/ { auth_request /_rg; }
        location = /_rg {
            internal;
            proxy_pass http://regiongate/v1/authz; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_pass_request_body off;
            proxy_set_header Content-Length ""; proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-For \$http_x_listener;
        }
    }
    # (b): secure_link, checked by nginx alone (deploy/nginx/grants.conf).
    server {
        listen 127.0.0.1:$((P + 1));
        root $WORK/root;
        location /v1/ {
            proxy_pass http://regiongate; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$http_x_listener;
        }
        location ~ ^/audio/(?<rg_track>[^/]+)/ {
            if (\$rg_secret = "") { return 403; }
            secure_link \$arg_rg_md5,\$arg_rg_exp;
            secure_link_md5 "\$secure_link_expires/audio/\$rg_track/ \$rg_secret";
            if (\$secure_link = "") { return 403; }
            if (\$secure_link = "0") { return 410; }
        }
    }
    # (c) with the authz answers to grants cached: key = track + grant (nothing personal).
    map \$request_uri \$rg_grant_key {
        "~^/audio/(?<t>[^/?]+)/[^?]*\\?(.*&)?rg_grant=(?<g>[^&]+)" "\$t|\$g";
        default "";
    }
    proxy_cache_path $WORK/tmp/authz-cache levels=1:2 keys_zone=rg_grants:10m max_size=64m inactive=30s use_temp_path=off;
    server {
        listen 127.0.0.1:$((P + 3));
        root $WORK/root;
        location /v1/ {
            proxy_pass http://regiongate; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$http_x_listener;
        }
        location /audio/ { auth_request /_rg; }
        location = /_rg {
            internal;
            proxy_pass http://regiongate/v1/authz; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_pass_request_body off;
            proxy_set_header Content-Length ""; proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-For \$http_x_listener;
            proxy_cache rg_grants;
            proxy_cache_key \$rg_grant_key;
            proxy_cache_valid 200 10s;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            proxy_cache_bypass \$rg_grant_nokey;
            proxy_no_cache \$rg_grant_nokey;
            proxy_cache_lock on;
        }
    }
    map \$rg_grant_key \$rg_grant_nokey { "" 1; default 0; }
    # Ungated: the same 61 requests as static files.
    server {
        listen 127.0.0.1:$((P + 2));
        root $WORK/root;
        location / { }
    }
}
NGINX

echo "== start regiongate and nginx"
RUST_LOG=warn "$BIN" serve --config "$WORK/regiongate.toml" > "$WORK/regiongate.log" 2>&1 &
RG_PID=$!
"$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -g "daemon off; pid $WORK/nginx.pid;" > "$WORK/nginx.stderr" 2>&1 &
NGINX_PID=$!
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$RG_ADMIN_PORT/readyz" >/dev/null 2>&1 \
        && curl -s -o /dev/null "http://127.0.0.1:$((P + 2))/" && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$RG_ADMIN_PORT/readyz" >/dev/null || die "regiongate did not come up"

# The grants a player would get from its preflight.
GRANT=$(curl -sf -H "X-Listener: $LISTENER" "http://127.0.0.1:$P/v1/tracks/$TRACK/playability")
HMAC_Q=$(echo "$GRANT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["grant"]["query"])')
SL_Q=$(echo "$GRANT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["grant"]["secure_link"]["query"])')
check() {  # $1 port, $2 query, $3 expected status
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Listener: $LISTENER" \
        "http://127.0.0.1:$1/audio/$TRACK/seg-1.mp4${2:+?$2}")
    [ "$code" = "$3" ] || die "port $1 query '${2}': $code, expected $3"
}
check $((P + 0)) "" 200; check $((P + 0)) "$HMAC_Q" 200
check $((P + 3)) "$HMAC_Q" 200; check $((P + 3)) "" 200
check $((P + 1)) "$SL_Q" 200; check $((P + 1)) "" 403; check $((P + 2)) "" 200
# The HMAC grant is checked without deciding: from nowhere (no X-Listener) it still passes.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P/audio/$TRACK/seg-1.mp4?$HMAC_Q")
[ "$code" = 200 ] || die "HMAC grant without a listener address: $code"

rg_cpu() { awk '{print $14 + $15}' "/proc/$RG_PID/stat"; }
TICK=$(getconf CLK_TCK)
run() {  # $1 name, $2 port, $3 query ("-": none)
    local before after out
    wrk -t"$THREADS" -c"$CONNS" -d2s -s "$HERE/played_track.lua" "http://127.0.0.1:$2" -- "$TRACK" "$3" "$LISTENER" >/dev/null
    before=$(rg_cpu)
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$HERE/played_track.lua" "http://127.0.0.1:$2" -- "$TRACK" "$3" "$LISTENER")
    after=$(rg_cpu)
    echo "$out" > "$WORK/wrk-$1.txt"
    local reqs rps non2xx
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    echo "$1 $reqs $rps $((after - before)) ${non2xx:-0}" >> "$WORK/results.txt"
}
echo "== runs: $DURATION each, $THREADS wrk threads, $CONNS connections"
run auth-request $((P + 0)) -
run secure-link $((P + 1)) "$SL_Q"
run hmac-grant $((P + 0)) "$HMAC_Q"
run hmac-cached $((P + 3)) "$HMAC_Q"
run ungated $((P + 2)) -

python3 - "$WORK/results.txt" "$TICK" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
tick = float(sys.argv[2])
by = {r[0]: r for r in rows}
base = float(by["ungated"][2])
def cpu_per_track(r):
    tracks = int(r[1]) / 61
    return (int(r[3]) / tick) / tracks * 1e3 if tracks else 0.0
print("| mode | req/s | played tracks/s | req/s vs ungated | regiongate CPU ms per played track | non-2xx |")
print("|---|---:|---:|---:|---:|---:|")
for name in ["auth-request", "secure-link", "hmac-grant", "hmac-cached", "ungated"]:
    r = by[name]
    rps = float(r[2])
    print(f"| {name} | {rps:,.0f} | {rps / 61:,.0f} | {rps / base:.2f} | {cpu_per_track(r):.3f} | {r[4]} |")
a, c = cpu_per_track(by["auth-request"]), cpu_per_track(by["hmac-grant"])
if c:
    print(f"\nregiongate CPU per played track, auth-request / hmac-grant: {a / c:.1f}x")
cc = cpu_per_track(by["hmac-cached"])
if cc:
    print(f"regiongate CPU per played track, auth-request / hmac-cached: {a / cc:.1f}x")
print(f"ungated / secure-link end-to-end time: {base / float(by['secure-link'][2]):.2f}x")
PY
