#!/usr/bin/env bash
# HTTP load on loopback: regiongate's /v1/authz against nginx + libnginx-mod-http-geoip2 doing
# the equivalent country gate (benches/load/nginx-gate.conf), in one run, with the same wrk
# settings, the same IP database (regions/ip/geoip.mmdb) and the same 1000 listener addresses
# (benches/load/ips.txt, half of them in the licensed countries DE AT CH LI), sent as
# X-Forwarded-For from the trusted peer 127.0.0.1.
#
#   benches/load/authz_vs_nginx.sh
#
# Runs, each after a short warm-up:
#   nginx-geoip2     the nginx gate (access log off)
#   regiongate-ip    regiongate, client address only (RUST_LOG=warn: warnings and errors only)
#   regiongate-gps   the same with a fresh Geo-Hint on every request (acc=25: the disc query)
#   regiongate-wifi  the same with a Wifi-Hint of three access points instead (estimate + disc)
#   regiongate-default  regiongate, address only, as it runs by default: RUST_LOG=info and the
#                    default record (start-up, reload and summary lines, no line per decision)
#   regiongate-fulllog  the same with decision_log = "full" (a line per decision, to a file)
# and the client's preflight call (GET /v1/tracks/QZNW52400010/playability, 200 either way):
#   nginx-preflight  the nginx gate's equivalent location (address only)
#   preflight-ip     regiongate, address only
#   preflight-gps    regiongate with the same Geo-Hint as regiongate-gps
# then prints requests/s, latency percentiles, the ratios to nginx, and the CPU time per request
# of the server (all its processes or threads) and of wrk.
#
# BASELINE_BIN=PATH (optional): another regiongate binary (say, a build of an earlier commit),
# measured in the same rounds as baseline-ip, baseline-gps and baseline-preflight-gps,
# against nginx in the same run.
#
# Settings (environment): THREADS=2 CONNS=64 DURATION=15s WARMUP=3s ROUNDS=1 (ROUNDS>1 runs
# the whole sequence again and reports the median), PIN=0 (1: servers on CPU 0 with one worker
# each: one nginx worker process, one regiongate public thread via TOKIO_WORKER_THREADS=1; wrk
# on CPU 1 with one thread), NGINX_PORT=18280 RG_PORT=18180 RG_ADMIN_PORT=18190,
# KEEP=0 (1: keep the work directory with the raw wrk outputs and logs),
# STEERING= (regiongate's connection_steering: auto, cpu, hash or shared; empty: its default,
# auto, which is cpu on this loopback listener; each start prints the steering in effect),
# NGINX_REUSEPORT=0 (1: nginx `listen ... reuseport`, one socket per worker, hash steering;
# default: nginx's own default, one listening socket shared by the workers).
#
# Without PIN both servers get the same two cores and one worker per core: nginx
# `worker_processes auto` (2 processes), regiongate one public thread per core (2; see
# `public_threads` in src/main.rs), each pinned to its core by cpu steering. wrk's two
# threads share those cores with them.
#
# Needs: cargo, nginx with libnginx-mod-http-geoip2, wrk, curl, python3
# (Debian: apt-get install -y nginx libnginx-mod-http-geoip2 wrk curl).
#
# wrk, the servers and everything else on the machine share its cores: on a 2-core machine
# the figures are a comparison made under the same conditions, not either server's capacity.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
ROUNDS=${ROUNDS:-1}
PIN=${PIN:-0}
NGINX_PORT=${NGINX_PORT:-18280}
RG_PORT=${RG_PORT:-18180}
RG_ADMIN_PORT=${RG_ADMIN_PORT:-18190}
KEEP=${KEEP:-0}
STEERING=${STEERING:-}
NGINX_REUSEPORT=${NGINX_REUSEPORT:-0}
IPS=${IPS:-$HERE/ips.txt}
BASELINE_BIN=${BASELINE_BIN:-}
GEOIP2_MODULE=/usr/lib/nginx/modules/ngx_http_geoip2_module.so

die() {
    echo "authz_vs_nginx.sh: $*" >&2
    exit 1
}

NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
[ -n "$NGINX" ] || die "nginx not found (apt-get install -y nginx libnginx-mod-http-geoip2)"
[ -e "$GEOIP2_MODULE" ] || die "$GEOIP2_MODULE missing (apt-get install -y libnginx-mod-http-geoip2)"
for t in wrk curl python3 cargo; do
    command -v "$t" >/dev/null || die "$t not found"
done

[ -s "$IPS" ] || die "$IPS missing (benches/load/make_ips.py writes it)"

if [ "$PIN" = 1 ]; then
    SERVER_CPU=(taskset -c 0)
    WRK_CPU=(taskset -c 1)
    THREADS=1
    NGINX_WORKERS=1
    export TOKIO_WORKER_THREADS=1
else
    SERVER_CPU=()
    WRK_CPU=()
    NGINX_WORKERS=auto
fi

WORK=$(mktemp -d /tmp/regiongate-load.XXXXXX)
NGINX_PID=""
RG_PID=""

stop() {
    # $1: pid. TERM (nginx: fast shutdown, workers too; regiongate: drains), then wait.
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    stop "$RG_PID"
    stop "$NGINX_PID"
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
    # $1: URL, $2: what, $3: status expected (default: any answer at all)
    local code
    for _ in $(seq 1 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
        if [ "$code" != 000 ] && { [ -z "${3:-}" ] || [ "$code" = "$3" ]; }; then
            return 0
        fi
        sleep 0.1
    done
    die "$2 did not come up ($1)"
}

echo "== build (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
BIN=$ROOT/target/release/regiongate

echo "== nginx + geoip2 gate on 127.0.0.1:$NGINX_PORT (worker_processes $NGINX_WORKERS, reuseport $NGINX_REUSEPORT)"
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
NGINX_LISTEN="127.0.0.1:$NGINX_PORT"
[ "$NGINX_REUSEPORT" = 1 ] && NGINX_LISTEN="$NGINX_LISTEN reuseport"
sed -e "s|__LISTEN__|$NGINX_LISTEN|" \
    -e "s|__MMDB__|$ROOT/regions/ip/geoip.mmdb|" \
    -e "s|__WORKERS__|$NGINX_WORKERS|" \
    "$HERE/nginx-gate.conf" >"$WORK/nginx/gate.conf"
"$NGINX" -t -q -c "$WORK/nginx/gate.conf" -p "$WORK/nginx/"
"${SERVER_CPU[@]}" "$NGINX" -c "$WORK/nginx/gate.conf" -p "$WORK/nginx/" \
    -g "daemon off; pid $WORK/nginx/nginx.pid;" 2>"$WORK/nginx/stderr" &
NGINX_PID=$!

write_config() {
    # $1: file, $2: extra top-level lines (before the [client] table)
    {
        [ -n "$STEERING" ] && echo "connection_steering = \"$STEERING\""
        [ -n "$2" ] && echo "$2"
        printf '[client]\ntrusted_proxies = ["127.0.0.1/32"]\n'
    } >"$1"
}
write_config "$WORK/regiongate.toml" ""
write_config "$WORK/regiongate-fulllog.toml" 'decision_log = "full"'

start_regiongate() {
    # $1: RUST_LOG level, $2: log file, $3: binary (default: this tree's release build),
    # $4: config file (default: $WORK/regiongate.toml)
    RUST_LOG=$1 "${SERVER_CPU[@]}" "${3:-$BIN}" serve --config "${4:-$WORK/regiongate.toml}" \
        --listen "127.0.0.1:$RG_PORT" --admin-listen "127.0.0.1:$RG_ADMIN_PORT" 2>"$2" &
    RG_PID=$!
    wait_http "http://127.0.0.1:$RG_ADMIN_PORT/readyz" regiongate 200
    echo "   regiongate in effect: $(curl -s "http://127.0.0.1:$RG_ADMIN_PORT/metrics" |
        grep '^regiongate_public_threads' || echo 'public threads unknown')"
}

echo "== regiongate on 127.0.0.1:$RG_PORT (embedded data, trusted_proxies 127.0.0.1/32, connection_steering ${STEERING:-default})"
start_regiongate warn "$WORK/regiongate-warn.log"
wait_http "http://127.0.0.1:$NGINX_PORT/v1/authz" nginx

echo "== same answers? ($(wc -l <"$IPS") addresses, each to both gates; regiongate also with Geo-Hint)"
python3 "$HERE/verify.py" "$IPS" "$NGINX_PORT" "$RG_PORT"

cpu_ticks() {
    # $@: pids; their CPU time (user + system, all threads) in clock ticks.
    local t=0 p f
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        # After "pid (comm) " the fields start at the 3rd: utime is the 14th, stime the 15th.
        read -r -a f <<<"$(sed 's/^.*) //' "/proc/$p/stat")"
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}

server_pids() {
    # $1: nginx or regiongate: the processes whose CPU time is the server's.
    if [ "$1" = nginx ]; then
        echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true)
    else
        echo "$RG_PID"
    fi
}

load() {
    # $1: name, $2: URL, $3: "" or gps, $4: round
    local name=$1 url=$2 mode=$3 round=$4
    local args=(-t"$THREADS" -c"$CONNS" -s "$HERE/authz.lua")
    local server=regiongate
    case $name in nginx-*) server=nginx ;; esac
    timeout 120 "${WRK_CPU[@]}" wrk "${args[@]}" -d"$WARMUP" "$url" -- "$IPS" $mode >/dev/null
    echo "-- $name (round $round): load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    # CPU time of the server and of wrk during the run, for CPU per request (less sensitive
    # to other work on the machine than requests per second).
    local pids before after
    pids=$(server_pids "$server")
    before=$(cpu_ticks $pids)
    # GNU time gives wrk's own CPU time (Debian: apt-get install -y time); without it, none.
    local timer=()
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -o "$WORK/$name.$round.wrktime" -f '%U %S')
    timeout 300 "${WRK_CPU[@]}" "${timer[@]}" wrk "${args[@]}" -d"$DURATION" --latency --timeout 2s \
        "$url" -- "$IPS" $mode | tee "$WORK/$name.$round.txt"
    after=$(cpu_ticks $pids)
    echo "$((after - before)) $(getconf CLK_TCK)" >"$WORK/$name.$round.cpu"
}

NG_URL="http://127.0.0.1:$NGINX_PORT/v1/authz"
RG_URL="http://127.0.0.1:$RG_PORT/v1/authz"
# Preflight: the Lua script builds the path; the URL gives the host.
NG_PF="http://127.0.0.1:$NGINX_PORT/"
RG_PF="http://127.0.0.1:$RG_PORT/"
echo "== wrk -t$THREADS -c$CONNS -d$DURATION --latency -s benches/load/authz.lua URL -- ips.txt [MODE]"
echo "   ($(nproc) cores; PIN=$PIN)"
for round in $(seq 1 "$ROUNDS"); do
    if [ "$round" -gt 1 ]; then
        stop "$RG_PID"
        start_regiongate warn "$WORK/regiongate-warn.log"
    fi
    load nginx-geoip2 "$NG_URL" "" "$round"
    load regiongate-ip "$RG_URL" "" "$round"
    load regiongate-gps "$RG_URL" gps "$round"
    load regiongate-wifi "$RG_URL" wifi "$round"
    load nginx-preflight "$NG_PF" preflight-ip "$round"
    load preflight-ip "$RG_PF" preflight-ip "$round"
    load preflight-gps "$RG_PF" preflight-gps "$round"
    if [ -n "$BASELINE_BIN" ]; then
        stop "$RG_PID"
        start_regiongate warn "$WORK/baseline-warn.log" "$BASELINE_BIN"
        load baseline-ip "$RG_URL" "" "$round"
        load baseline-gps "$RG_URL" gps "$round"
        load baseline-preflight-gps "$RG_PF" preflight-gps "$round"
    fi
    stop "$RG_PID"
    start_regiongate info "$WORK/regiongate-info.log"
    load regiongate-default "$RG_URL" "" "$round"
    stop "$RG_PID"
    start_regiongate info "$WORK/regiongate-fulllog.log" "" "$WORK/regiongate-fulllog.toml"
    load regiongate-fulllog "$RG_URL" "" "$round"
done
stop "$RG_PID"
RG_PID=""
echo "-- log written in the last regiongate-default run: $(wc -l <"$WORK/regiongate-info.log") lines, $(du -h "$WORK/regiongate-info.log" | cut -f1)"
echo "-- log written in the last regiongate-fulllog run: $(wc -l <"$WORK/regiongate-fulllog.log") lines, $(du -h "$WORK/regiongate-fulllog.log" | cut -f1)"

echo "== summary (median of $ROUNDS round(s))"
python3 - "$WORK" "$ROUNDS" "$BASELINE_BIN" <<'EOF'
import re, statistics, sys
work, rounds, baseline = sys.argv[1], int(sys.argv[2]), sys.argv[3]
UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}

def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    pct = {}
    for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", t, re.M):
        pct[p] = float(v) * UNIT[u]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    total = int(re.search(r"(\d+) requests in", t).group(1))
    errors = re.search(r"Socket errors: (.*)", t)
    # CPU microseconds per request: the server's (all its processes or threads) and wrk's.
    try:
        ticks, hz = open(path[:-4] + ".cpu").read().split()
        server_us = int(ticks) / int(hz) * 1e6 / total
    except (OSError, ValueError):
        server_us = float("nan")
    try:
        u, s = open(path[:-4] + ".wrktime").read().split()[-2:]
        wrk_us = (float(u) + float(s)) * 1e6 / total
    except (OSError, ValueError):
        wrk_us = float("nan")
    return {"rps": rps, "p50": pct["50"], "p90": pct["90"], "p99": pct["99"],
            "deny": int(non2xx.group(1)) / total if non2xx else 0.0,
            "cpu": server_us, "wrkcpu": wrk_us,
            "errors": errors.group(1).strip() if errors else ""}

names = ["nginx-geoip2", "regiongate-ip", "regiongate-gps", "regiongate-wifi",
         "regiongate-default", "regiongate-fulllog",
         "nginx-preflight", "preflight-ip", "preflight-gps"]
if baseline:
    names += ["baseline-ip", "baseline-gps", "baseline-preflight-gps"]
# Each row against nginx doing the same job: the authz gate, or its preflight location.
PEER = {n: ("nginx-preflight" if "preflight" in n else "nginx-geoip2") for n in names}
res = {}
for n in names:
    runs = [parse(f"{work}/{n}.{r}.txt") for r in range(1, rounds + 1)]
    res[n] = {k: (statistics.median(x[k] for x in runs) if k != "errors" else
                  "; ".join(x[k] for x in runs if x[k])) for k in runs[0]}
print(f"{'server':22} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'denied':>7}"
      f" {'req/s vs nginx':>15} {'p50 vs nginx':>13} {'p99 vs nginx':>13}"
      f" {'server CPU us/req':>18} {'wrk CPU us/req':>15}")
for n in names:
    r = res[n]
    base = res[PEER[n]]
    print(f"{n:22} {r['rps']:9.0f} {r['p50']:8.3f} {r['p90']:8.3f} {r['p99']:8.3f} {r['deny']:7.1%}"
          f" {r['rps'] / base['rps']:15.2f} {r['p50'] / base['p50']:13.2f} {r['p99'] / base['p99']:13.2f}"
          f" {r['cpu']:18.1f} {r['wrkcpu']:15.1f}"
          + (f"  socket errors: {r['errors']}" if r["errors"] else ""))
# Ratios per round (each regiongate run against the nginx run of the same round): the spread
# of the ratio says more than the spread of either figure under other load.
if rounds > 1:
    for n in names:
        if n == PEER[n]:
            continue
        ratios = []
        for r in range(1, rounds + 1):
            a, b = parse(f"{work}/{PEER[n]}.{r}.txt"), parse(f"{work}/{n}.{r}.txt")
            ratios.append(f"{b['rps'] / a['rps']:.2f}/{b['p99'] / a['p99']:.2f}")
        print(f"  {n}: req/s and p99 vs nginx per round: {' '.join(ratios)}")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
