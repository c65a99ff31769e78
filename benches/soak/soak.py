#!/usr/bin/env python3
"""Helper of benches/soak/soak.sh: everything except starting processes. Standard library only.

    soak.py prepare WORK IPS_FILE           clients.json, the wrk request list, data B's extra file
    soak.py oracle WORK BIN                 oracle.json: `regiongate check` on data A and B for
                                            every (client, track)
    soak.py verify WORK PORT UNTIL          checks answers of every front door against the oracle
    soak.py bad WORK PORT UNTIL             bad input of many kinds, counts the answers
    soak.py slow WORK PORT UNTIL            slowloris and idle clients that reconnect when cut off
    soak.py flip WORK ADMIN PID UNTIL EVERY flips the live data between A and B (watcher, admin
                                            reload, SIGHUP) and now and then breaks it
    soak.py mem WORK PID UNTIL              samples VmRSS / VmHWM of the process every second
    soak.py origin PORT                     a minimal origin for the proxy front door (if no nginx)
    soak.py report WORK                     the summary (also written to WORK/report.txt)

Each long-running part stops at UNTIL (Unix time) and writes WORK/<part>.json.
"""
import asyncio
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

TRACKS = ["QZNW52400010", "QZNW52400001", "QZHL52500001", "QZXX52600001"]
USE, TIER = "on_demand_stream", "premium"
DACH = {"DE", "AT", "CH", "LI"}

# Data B = data A plus this file: Alpenglow moves from DACH to FR/GB/US/CN, and track
# QZNW52400001 is taken down.
FLIP = """# benches/soak: data version B.
[[dealset]]
selector = { track = "QZNW52400010" }
updated = "2026-01-01T00:00:00Z"
deals = [{ id = "soak-flip-10", territories = ["FR", "GB", "US", "CN"], start = "2020-01-01", uses = ["on_demand_stream"] }]

[[dealset]]
selector = { track = "QZNW52400001" }
updated = "2026-01-01T00:00:00Z"
deals = []
"""
BROKEN = '[[dealset]]\nselector = { track = "QZNW52400010" }\nupdated = "not a date"\n'


def load(path):
    with open(path) as f:
        return json.load(f)


def dump(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# ---- prepare ------------------------------------------------------------------------------------


def prepare(work, ips_file):
    rows = [l.split() for l in open(ips_file) if l.strip()]
    dach = [r for r in rows if r[1] in DACH][:4]
    other = [r for r in rows if r[1] not in DACH][:4]
    clients = []
    for ip, cc, lat, lon in dach + other:
        clients.append({"id": f"ip-{ip}", "ip": ip, "cc": cc, "gps": None})
    # GPS hints at a point in the address's country: plausible, the point decides.
    for ip, cc, lat, lon in dach[:2] + other[:2]:
        clients.append({"id": f"gps-{ip}", "ip": ip, "cc": cc, "gps": [float(lat), float(lon)]})
    # A hint far from the address (Paris for a German address): implausible, the address decides.
    clients.append({"id": f"far-{dach[2][0]}", "ip": dach[2][0], "cc": dach[2][1], "gps": [48.8566, 2.3522]})
    # Private addresses: no location evidence at all.
    for ip in ["10.1.2.3", "192.168.7.9"]:
        clients.append({"id": f"none-{ip}", "ip": ip, "cc": None, "gps": None})
    dump(os.path.join(work, "clients.json"), clients)
    with open(os.path.join(work, "soak-flip.toml"), "w") as f:
        f.write(FLIP)
    # The wrk request list: one line per request, "METHOD PATH\tHEADER: V\t...\tBODY=...".
    now = int(time.time())
    lines = []
    for c in clients:
        h = [f"X-Forwarded-For: {c['ip']}"]
        if c["gps"]:
            h.append(f"Geo-Hint: gps={c['gps'][0]},{c['gps'][1]}; acc=25; ts={now}")
        for t in TRACKS:
            lines.append("\t".join([f"GET /v1/tracks/{t}/playability?use={USE}&tier={TIER}"] + h))
            lines.append("\t".join(["GET /v1/authz", f"X-Original-URI: /audio/{t}/seg-1.mp4"] + h))
            lines.append("\t".join([f"GET /v1/authz/audio/{t}/seg-2.mp4"] + h))
            lines.append("\t".join([f"GET /audio/{t}/seg-3.mp4"] + h))
        body = json.dumps({"tracks": TRACKS, "use": USE, "tier": TIER})
        lines.append("\t".join(["POST /v1/playability", "Content-Type: application/json"] + h + ["BODY=" + body]))
        lines.append("\t".join(["GET /v1/territory"] + h))
    random.Random(20261129).shuffle(lines)
    with open(os.path.join(work, "requests.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"  {len(clients)} clients x {len(TRACKS)} tracks, {len(lines)} distinct requests for wrk")


# ---- oracle -------------------------------------------------------------------------------------


def check(binary, data, client, track):
    cmd = [binary, "--regions", data, "check", "--track", track, "--use", USE, "--tier", TIER, "--ip", client["ip"]]
    if client["gps"]:
        cmd += ["--gps", f"{client['gps'][0]},{client['gps'][1]},25"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if out.returncode not in (0, 1):
        raise SystemExit(f"oracle: {' '.join(cmd)}: exit {out.returncode}: {out.stderr}")
    v = json.loads(out.stdout)
    return v["data_version"], client["id"], track, {"decision": v["decision"], "reason": v["reason"]}


def oracle(work, binary):
    clients = load(os.path.join(work, "clients.json"))
    # The same binary, data and clients give the same answers: reuse an earlier run's oracle.
    build = subprocess.run(["sha256sum", binary], capture_output=True, text=True).stdout.split()[0]
    key = subprocess.run(
        ["sha256sum"], input=build + json.dumps(clients, sort_keys=True) + FLIP, capture_output=True, text=True
    ).stdout.split()[0][:16]
    va = check(binary, os.path.join(work, "A"), clients[0], TRACKS[0])[0]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "regiongate-soak", f"oracle-{va}-{key}.json")
    if os.path.exists(cache):
        shutil.copy(cache, os.path.join(work, "oracle.json"))
        print(f"  from {cache}")
        return
    jobs = [(d, c, t) for d in ("A", "B") for c in clients for t in TRACKS]
    result, versions = {}, {}
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pool.submit(check, binary, os.path.join(work, d), c, t): d for d, c, t in jobs}
        for f in concurrent.futures.as_completed(futures):
            version, cid, track, answer = f.result()
            versions.setdefault(futures[f], version)
            if versions[futures[f]] != version:
                raise SystemExit("oracle: one data directory gave two versions")
            result.setdefault(version, {}).setdefault(cid, {})[track] = answer
    if versions["A"] == versions["B"]:
        raise SystemExit("oracle: data A and B have the same version")
    dump(os.path.join(work, "oracle.json"), {"versions": versions, "answers": result})
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    shutil.copy(os.path.join(work, "oracle.json"), cache)
    flips = sum(
        result[versions["A"]][c["id"]][t]["decision"] != result[versions["B"]][c["id"]][t]["decision"]
        for c in clients
        for t in TRACKS
    )
    print(f"  {len(jobs)} checks in {time.time() - started:.0f} s; A={versions['A']} B={versions['B']}; "
          f"{flips} of {len(clients) * len(TRACKS)} decisions differ between A and B")


# ---- verify -------------------------------------------------------------------------------------

AUTHZ_STATUS = {200: "allow", 403: "deny", 428: "need_precise_location"}


def verify(work, port, until):
    o = load(os.path.join(work, "oracle.json"))
    answers = o["answers"]
    clients = load(os.path.join(work, "clients.json"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    checked, wrong, by_version, conn_errors = {}, {}, {}, 0
    examples = []
    unknown_version = 0

    def ask(method, path, headers, body=None):
        nonlocal conn, conn_errors
        for _ in range(3):
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                return r, data
            except (OSError, http.client.HTTPException):
                conn_errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        raise SystemExit("verify: the service does not answer")

    def record(door, client, track, version, got):
        nonlocal unknown_version
        if version not in answers:
            unknown_version += 1
            return
        by_version[version] = by_version.get(version, 0) + 1
        want = answers[version][client["id"]][track]
        checked[door] = checked.get(door, 0) + 1
        ok = got["decision"] == want["decision"] and got.get("reason", want["reason"]) == want["reason"]
        if not ok:
            wrong[door] = wrong.get(door, 0) + 1
            if len(examples) < 10:
                examples.append({"door": door, "client": client["id"], "track": track, "version": version,
                                 "want": want, "got": got})

    rnd = random.Random(7)
    while time.time() < until:
        c = rnd.choice(clients)
        h = {"X-Forwarded-For": c["ip"]}
        if c["gps"]:
            h["Geo-Hint"] = f"gps={c['gps'][0]},{c['gps'][1]}; acc=25; ts={int(time.time())}"
        for t in TRACKS:
            r, data = ask("GET", f"/v1/tracks/{t}/playability?use={USE}&tier={TIER}", h)
            v = json.loads(data)
            record("preflight GET", c, t, r.getheader("x-regiongate-version"),
                   {"decision": v.get("decision"), "reason": v.get("reason")})
            for door, path, extra in (
                ("authz (nginx)", "/v1/authz", {"X-Original-URI": f"/audio/{t}/seg-1.mp4"}),
                ("authz (envoy)", f"/v1/authz/audio/{t}/seg-2.mp4", {}),
            ):
                r, _ = ask("GET", path, {**h, **extra})
                record(door, c, t, r.getheader("x-regiongate-version"),
                       {"decision": AUTHZ_STATUS.get(r.status, f"status {r.status}"),
                        "reason": r.getheader("x-regiongate-reason")})
            r, data = ask("GET", f"/audio/{t}/seg-3.mp4", h)
            if r.status == 200:
                got = {"decision": "allow"} if data.startswith(b"origin") else {"decision": "status 200, not the origin's body"}
            elif r.status == 451:
                got = {"decision": r.getheader("x-regiongate-decision") or "?",
                       "reason": json.loads(data).get("reason")}
            else:
                got = {"decision": f"status {r.status}"}
            record("proxy", c, t, r.getheader("x-regiongate-version"), got)
        body = json.dumps({"tracks": TRACKS, "use": USE, "tier": TIER})
        r, data = ask("POST", "/v1/playability", {**h, "Content-Type": "application/json"}, body)
        version = r.getheader("x-regiongate-version")
        for i, d in enumerate(json.loads(data).get("decisions", [])):
            record("preflight POST", c, TRACKS[i], version, {"decision": d.get("decision"), "reason": d.get("reason")})
    dump(os.path.join(work, "verify.json"), {
        "checked": checked, "wrong": wrong, "examples": examples, "by_version": by_version,
        "unknown_version": unknown_version, "reconnects": conn_errors,
    })


# ---- bad input ----------------------------------------------------------------------------------


def bad_requests():
    now = int(time.time())
    t = "/v1/tracks/QZNW52400010/playability"
    x = "X-Forwarded-For: 84.158.215.214\r\n"

    def get(path, headers=""):
        return f"GET {path} HTTP/1.1\r\nHost: soak\r\n{headers}Connection: close\r\n\r\n".encode()

    def post(body, headers="Content-Type: application/json\r\n"):
        b = body.encode() if isinstance(body, str) else body
        return (f"POST /v1/playability HTTP/1.1\r\nHost: soak\r\n{headers}Content-Length: {len(b)}\r\n"
                "Connection: close\r\n\r\n").encode() + b

    out = {
        "geo-hint: not a hint": get(t, "Geo-Hint: nonsense\r\n"),
        "geo-hint: latitude 91": get(t, f"Geo-Hint: gps=91,10; acc=20; ts={now}\r\n"),
        "geo-hint: NaN": get(t, f"Geo-Hint: gps=NaN,10; acc=20; ts={now}\r\n"),
        "geo-hint: stale fix": get(t, "Geo-Hint: gps=48,11; acc=20; ts=1\r\n"),
        "geo-hint: repeated": get(t, f"Geo-Hint: gps=48,11; acc=20; ts={now}\r\nGeo-Hint: gps=1,1; acc=20; ts={now}\r\n"),
        "geo-hint: 8 KiB": get(t, "Geo-Hint: gps=" + "1" * 8192 + "\r\n"),
        "cell-hint: garbage": get(t, "Cell-Hint: mcc=abc; mnc=zz; cell=-1\r\n"),
        "x-forwarded-for: garbage": get(t, "X-Forwarded-For: not-an-ip, 999.1.1.1\r\n"),
        "x-forwarded-for: 2000 hops": get(t, "X-Forwarded-For: " + ", ".join(["1.2.3.4"] * 2000) + "\r\n"),
        "forwarded: garbage": get(t, 'Forwarded: for="[::1";;;by\r\n'),
        "use/tier: unknown": get(t + "?use=piracy&tier=gold", x),
        "track id: 4 KiB": get("/v1/tracks/" + "A" * 4096 + "/playability", x),
        "path: traversal": get("/v1/tracks/../../etc/passwd/playability", x),
        "path: percent-encoded NUL": get("/v1/tracks/%00/playability", x),
        "authz: no original URI": get("/v1/authz", x),
        "authz: original URI garbage": get("/v1/authz", x + "X-Original-URI: \x7f\x01zz\r\n"),
        "post: not JSON": post("{tracks: nope"),
        "post: wrong shape": post('{"tracks": {"a": 1}}'),
        "post: 1000 tracks": post(json.dumps({"tracks": ["T"] * 1000})),
        "post: deep nesting": post('{"tracks": ' + "[" * 5000 + "]" * 5000 + "}"),
        "post: 1 MB body": post("x" * (1 << 20)),
        "post: invalid UTF-8": post(b'{"tracks": ["\xff\xfe"]}'),
        "headers: 200 of them": get(t, "".join(f"X-H{i}: {i}\r\n" for i in range(200))),
        "headers: 64 KiB value": get(t, "X-Big: " + "b" * 65536 + "\r\n"),
        "request: not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),
        "request: absolute-form": get("http://evil.example/audio/QZNW52400010/a.mp4", x),
        "request: CONNECT": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        "request: two Host headers": b"GET /audio/QZNW52400010/a.mp4 HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        "request: bad chunked body": (b"POST /v1/playability HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n"
                                      b"Connection: close\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"),
        "request: HTTP/0.9": b"GET /v1/territory\r\n\r\n",
    }
    return out


def bad(work, port, until):
    reqs = bad_requests()
    mix, by_kind, sent = {}, {}, 0
    while time.time() < until:
        for kind, raw in reqs.items():
            status = "no answer"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    try:
                        s.sendall(raw)
                    except OSError:
                        # Refused before the whole request was sent (a body over the limit):
                        # the answer may still be there to read.
                        status = "closed while sending"
                    first = s.recv(64)
                    if first.startswith(b"HTTP/1.1 "):
                        status = first[9:12].decode()
            except OSError:
                pass
            sent += 1
            mix[status] = mix.get(status, 0) + 1
            by_kind.setdefault(kind, {})
            by_kind[kind][status] = by_kind[kind].get(status, 0) + 1
            time.sleep(0.01)
            if time.time() >= until:
                break
    dump(os.path.join(work, "bad.json"), {"sent": sent, "mix": mix, "by_kind": by_kind})


# ---- slow clients -------------------------------------------------------------------------------


async def slow_main(port, until, loris, idle):
    cuts = {"slowloris": 0, "idle": 0}
    head = b"GET /v1/territory HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"s" * 4096

    async def slowloris():
        while time.time() < until:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                for i in range(len(head)):
                    if time.time() >= until:
                        break
                    w.write(head[i:i + 1])
                    await w.drain()
                    await asyncio.sleep(0.2)
            except OSError:
                cuts["slowloris"] += 1
            w.close()

    async def idler():
        while time.time() < until:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                left = until - time.time()
                if left > 0 and await asyncio.wait_for(r.read(1), timeout=left) == b"":
                    cuts["idle"] += 1
            except (asyncio.TimeoutError, OSError):
                pass
            w.close()

    await asyncio.gather(*[slowloris() for _ in range(loris)], *[idler() for _ in range(idle)])
    return cuts


def slow(work, port, until, loris=50, idle=50):
    cuts = asyncio.run(slow_main(port, until, loris, idle))
    dump(os.path.join(work, "slow.json"), {"slowloris": loris, "idle": idle, "cut_off": cuts})


# ---- reloads ------------------------------------------------------------------------------------


def admin(admin_port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=60)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def flip(work, admin_port, pid, until, every):
    live = os.path.join(work, "data", "licenses")
    flip_file, broken_file = os.path.join(live, "soak-flip.toml"), os.path.join(live, "soak-broken.toml")
    modes = ["watch", "admin", "sighup", "broken"]
    done = {m: 0 for m in modes}
    results = {}
    n = 0

    def write_rename(path, text):
        tmp = os.path.join(live, ".staged")  # not a .toml: never loaded
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    while time.time() + every < until:
        time.sleep(every)
        mode = modes[n % len(modes)]
        n += 1
        if mode == "broken":
            # A broken file: the reload is refused and the data in service stays.
            write_rename(broken_file, BROKEN)
            status, _ = admin(admin_port, "POST", "/admin/reload")
            results[f"broken {status}"] = results.get(f"broken {status}", 0) + 1
            os.remove(broken_file)
            status, _ = admin(admin_port, "POST", "/admin/reload")
            results[f"repaired {status}"] = results.get(f"repaired {status}", 0) + 1
        else:
            if os.path.exists(flip_file):
                os.remove(flip_file)
            else:
                shutil.copy(os.path.join(work, "soak-flip.toml"), os.path.join(live, ".staged"))
                os.replace(os.path.join(live, ".staged"), flip_file)
            if mode == "admin":
                status, _ = admin(admin_port, "POST", "/admin/reload")
                results[f"admin {status}"] = results.get(f"admin {status}", 0) + 1
            elif mode == "sighup":
                os.kill(pid, signal.SIGHUP)
        done[mode] += 1
    dump(os.path.join(work, "flip.json"), {"every_s": every, "done": done, "admin_answers": results})


# ---- memory -------------------------------------------------------------------------------------


def mem(work, pid, until):
    samples, rss_max, hwm, first, last = 0, 0, 0, None, None
    series, started = [], time.time()
    while time.time() < until:
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            break
        f = {l.split(":")[0]: int(l.split()[1]) for l in status.splitlines() if l.startswith(("VmRSS", "VmHWM"))}
        first = first if first is not None else f["VmRSS"]
        rss_max, hwm, samples = max(rss_max, f["VmRSS"]), f["VmHWM"], samples + 1
        last = f["VmRSS"]
        if (samples - 1) % 30 == 0:
            series.append([round(time.time() - started), f["VmRSS"] // 1024])
        time.sleep(1)
    dump(os.path.join(work, "mem.json"), {"samples": samples, "rss_first_kb": first, "rss_last_kb": last,
                                          "rss_max_kb": rss_max, "hwm_kb": hwm, "rss_mb_every_30s": series})


# ---- origin -------------------------------------------------------------------------------------


async def origin_main(port):
    async def handle(r, w):
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                body = b"origin " + path
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mp4\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()
        except (asyncio.IncompleteReadError, OSError, IndexError):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# ---- report -------------------------------------------------------------------------------------


def report(work):
    def get(name, default=None):
        p = os.path.join(work, name)
        return load(p) if os.path.exists(p) else default

    w, v, b, s, f, m, run = (get(n, {}) for n in
                             ("wrk.json", "verify.json", "bad.json", "slow.json", "flip.json", "mem.json", "run.json"))
    out = []
    say = out.append
    served = w.get("requests", 0) + sum(v.get("checked", {}).values()) + b.get("sent", 0)
    wrong = sum(v.get("wrong", {}).values())
    say(f"duration: {run.get('duration_s')} s; load average before: {run.get('load_before')}, after: {run.get('load_after')}")
    say(f"requests answered: {served:,} (wrk {w.get('requests', 0):,}, verification {sum(v.get('checked', {}).values()):,} "
        f"decisions, bad input {b.get('sent', 0):,})")
    say(f"wrk: {w.get('rps', 0):,.0f} req/s; latency p50 {w.get('p50_ms', 0):.2f} ms, p90 {w.get('p90_ms', 0):.2f} ms, "
        f"p99 {w.get('p99_ms', 0):.2f} ms, max {w.get('max_ms', 0):.1f} ms")
    errors = {k: n for k, n in w.get("errors", {}).items() if k != "status"}
    say(f"wrk statuses: {w.get('statuses')} (403, 428, 451: denials); socket errors: {errors}")
    say(f"verification: {v.get('checked')}; wrong decisions: {wrong} {v.get('wrong') or ''}; answers per data "
        f"version: {v.get('by_version')}; unknown version: {v.get('unknown_version')}; reconnects: {v.get('reconnects')}")
    for e in v.get("examples", [])[:5]:
        say(f"  wrong: {e}")
    fivexx = sum(n for k, n in b.get("mix", {}).items() if k.startswith("5"))
    say(f"bad input: {b.get('sent', 0):,} requests of {len(b.get('by_kind', {}))} kinds; answers {b.get('mix')}; 5xx: {fivexx}")
    say(f"slow clients: {s.get('slowloris')} slowloris + {s.get('idle')} idle, cut off {s.get('cut_off')}")
    say(f"data flips: {f.get('done')} every {f.get('every_s')} s; admin answers {f.get('admin_answers')}; "
        f"reloads: {run.get('reloads')}")
    say(f"memory: VmRSS first {m.get('rss_first_kb', 0) / 1024:.0f} MB, max {m.get('rss_max_kb', 0) / 1024:.0f} MB, "
        f"last {m.get('rss_last_kb', 0) / 1024:.0f} MB; VmHWM {m.get('hwm_kb', 0) / 1024:.0f} MB ({m.get('samples')} samples)")
    say(f"VmRSS (s, MB): {m.get('rss_mb_every_30s')}")
    say(f"panics in the log: {run.get('panics')}; exit status after SIGTERM: {run.get('exit')}")
    failed = wrong > 0 or run.get("panics") != 0 or run.get("exit") != 0 or fivexx > 0 or v.get("unknown_version")
    say("RESULT: " + ("FAIL" if failed else "ok"))
    text = "\n".join(out)
    print(text)
    with open(os.path.join(work, "report.txt"), "w") as fh:
        fh.write(text + "\n")
    sys.exit(1 if failed else 0)


def main():
    a = sys.argv[1:]
    cmd = a[0] if a else ""
    if cmd == "prepare":
        prepare(a[1], a[2])
    elif cmd == "oracle":
        oracle(a[1], a[2])
    elif cmd == "verify":
        verify(a[1], int(a[2]), float(a[3]))
    elif cmd == "bad":
        bad(a[1], int(a[2]), float(a[3]))
    elif cmd == "slow":
        slow(a[1], int(a[2]), float(a[3]))
    elif cmd == "flip":
        flip(a[1], int(a[2]), int(a[3]), float(a[4]), float(a[5]))
    elif cmd == "mem":
        mem(a[1], int(a[2]), float(a[3]))
    elif cmd == "origin":
        asyncio.run(origin_main(int(a[1])))
    elif cmd == "report":
        report(a[1])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
