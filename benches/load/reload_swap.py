#!/usr/bin/env python3
"""Hot reload under load: wrk at a steady rate against /v1/authz while the data directory is
replaced SWAPS times (default 20) with two alternating versions in which one track flips
between licensed in DE and licensed in FR only. Loopback only, bounded in time.

    python3 benches/load/reload_swap.py            # default world + sample licences
    TRACKS=1000000 python3 benches/load/reload_swap.py   # plus a 1M-track bulk catalogue

The layout is the object-storage sync pattern of deploy/: the server runs with
`--regions WORK/current`, `current` is a symlink to `releases/a` or `releases/b`, and each swap
is `ln -s releases/X current.tmp && rename(current.tmp, current)` (atomic), seen by the file
watcher. Both releases share the big files (world, IP database, catalogue) through symlinks
and differ in `licenses/flip.toml`.

Checks (exit status 1 if any fails):
- every answer wrk got is one of exactly two: `200 allow <version a>` or `403 deny <version b>`
  (no 5xx, no mixed answer such as version b with a's decision), and wrk reports no socket
  errors (connect, read, write, timeout) and no non-expected statuses;
- after each swap the new answer is served within SETTLE_S (default 30 s); the time from the
  swap to the first new answer is the reload time seen by a client (watcher debounce 400 ms +
  building the new snapshot).

Reports: request count and rate, latency p50/p90/p99/p99.9/max over the whole run (all of it
under reloads), reload times (client-seen, and build_ms from /admin/snapshot), resident
memory: steady state before the first swap, peak sampled every 20 ms, and VmHWM.

Settings (environment): CHANGE=licence (the releases differ in one licence file: the usual
reload, which shares the served territory index) or world (release b also has a custom
territory of its own, so every swap parses the world and builds the index again) SWAPS=20 RATE=2000 (requests/s) CONNS=20 DWELL_S=1.0 (time to keep
serving a version after its answer is seen) TRACKS=0 (bulk catalogue size; 0 = none)
SETTLE_S=30 PORT and ADMIN_PORT (default: free ports) KEEP=0.

Needs: cargo, wrk, python3 (standard library only).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
REGIONS = os.path.join(ROOT, "regions")

SWAPS = int(os.environ.get("SWAPS", "20"))
RATE = int(os.environ.get("RATE", "2000"))
CONNS = int(os.environ.get("CONNS", "20"))
DWELL_S = float(os.environ.get("DWELL_S", "1.0"))
TRACKS = int(os.environ.get("TRACKS", "0"))
CHANGE = os.environ.get("CHANGE", "licence")
SETTLE_S = float(os.environ.get("SETTLE_S", "30"))


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = int(os.environ.get("PORT", "0")) or free_port()
ADMIN_PORT = int(os.environ.get("ADMIN_PORT", "0")) or free_port()
KEEP = os.environ.get("KEEP", "0") == "1"
TRACK = "QZRG52699999"
IPS = os.path.join(HERE, "ips.txt")


def die(msg):
    print(f"reload_swap.py: {msg}", file=sys.stderr)
    sys.exit(1)


def licence(territory):
    return (
        "# The track whose licence flips between the two releases.\n"
        "[[dealset]]\n"
        f'selector = {{ track = "{TRACK}" }}\n'
        'updated = "2026-01-01"\n'
        f'deals = [{{ id = "flip-{territory}", territories = ["{territory}"], '
        'start = "2020-01-01", uses = ["on_demand_stream"] }]\n'
    )


def make_release(path, territory, catalogue, extra_territory):
    """A release directory: symlinks to the shared data, its own flip licence, and with
    extra_territory a custom territory of its own (so its geometry differs)."""
    os.makedirs(os.path.join(path, "licenses"))
    os.makedirs(os.path.join(path, "custom"))
    for name in ["countries.geojson.gz", "groups.toml", "mcc-mnc.csv", "ip"]:
        os.symlink(os.path.join(REGIONS, name), os.path.join(path, name))
    for name in os.listdir(os.path.join(REGIONS, "custom")):
        os.symlink(os.path.join(REGIONS, "custom", name), os.path.join(path, "custom", name))
    if extra_territory:
        # A small square in the North Atlantic: a rights-holder territory of release b only.
        with open(os.path.join(path, "custom", "flip-area.geojson"), "w") as f:
            json.dump({"type": "FeatureCollection", "features": [{
                "type": "Feature", "properties": {"id": "FLIP_AREA"},
                "geometry": {"type": "Polygon", "coordinates": [
                    [[-30, 40], [-29, 40], [-29, 41], [-30, 41], [-30, 40]]]}}]}, f)
    lic = os.path.join(REGIONS, "licenses")
    for name in sorted(os.listdir(lic)):
        if name.endswith((".toml", ".csv")):
            os.symlink(os.path.join(lic, name), os.path.join(path, "licenses", name))
    if catalogue:
        os.symlink(catalogue, os.path.join(path, "licenses", "catalogue.csv"))
    with open(os.path.join(path, "licenses", "flip.toml"), "w") as f:
        f.write(licence(territory))


def swap(work, release):
    tmp = os.path.join(work, "current.tmp")
    os.symlink(os.path.join("releases", release), tmp)
    os.rename(tmp, os.path.join(work, "current"))


def http(port, path, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def probe(de_ip):
    """The answer a DE listener gets now: (status, decision, version)."""
    status, headers, _ = http(PORT, "/v1/authz", {
        "X-Original-URI": f"/audio/{TRACK}/seg-1.mp4",
        "X-Original-Method": "GET",
        "X-Forwarded-For": de_ip,
    })
    h = {k.lower(): v for k, v in headers.items()}
    return status, h.get("x-regiongate-decision", "-"), h.get("x-regiongate-version", "-")


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def main():
    for tool in ["wrk", "cargo"]:
        if not shutil.which(tool):
            die(f"{tool} not found")
    de_ip = next(l.split()[0] for l in open(IPS) if l.split()[1:2] == ["DE"])
    print("== build (cargo build --release)", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "regiongate")

    work = tempfile.mkdtemp(prefix="regiongate-reload.")
    server = wrk = None
    try:
        catalogue = None
        if TRACKS:
            print(f"== generating a {TRACKS}-track catalogue (benches/gen_catalog.py)", flush=True)
            gen = os.path.join(work, "gen")
            subprocess.run([sys.executable, os.path.join(ROOT, "benches", "gen_catalog.py"),
                            gen, str(TRACKS)], check=True, stdout=subprocess.DEVNULL)
            found = [f for f in os.listdir(os.path.join(gen, "licenses")) if f.endswith(".csv")]
            if len(found) != 1:
                die(f"expected one CSV from gen_catalog.py, found {found}")
            # Its deal templates live in a TOML next to the CSV: keep them with it.
            catalogue = os.path.join(gen, "licenses", found[0])
        if CHANGE not in ("licence", "world"):
            die(f"CHANGE={CHANGE}: licence or world")
        make_release(os.path.join(work, "releases", "a"), "DE", catalogue, False)
        make_release(os.path.join(work, "releases", "b"), "FR", catalogue, CHANGE == "world")
        if catalogue:
            for r in ["a", "b"]:
                for f in os.listdir(os.path.join(work, "gen", "licenses")):
                    if f.endswith(".toml"):
                        os.symlink(os.path.join(work, "gen", "licenses", f),
                                   os.path.join(work, "releases", r, "licenses", f))
        swap(work, "a")
        with open(os.path.join(work, "regiongate.toml"), "w") as f:
            f.write('[client]\ntrusted_proxies = ["127.0.0.1/32"]\n')

        log = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen(
            [binary, "serve", "--config", os.path.join(work, "regiongate.toml"),
             "--regions", os.path.join(work, "current"),
             "--listen", f"127.0.0.1:{PORT}", "--admin-listen", f"127.0.0.1:{ADMIN_PORT}"],
            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        deadline = time.monotonic() + 120
        while True:
            try:
                if http(ADMIN_PORT, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                die("server did not become ready; see " + log.name)
            time.sleep(0.1)
        if server.poll() is not None:
            die("server exited (port taken?); see " + log.name)

        expected = {"a": (200, "allow"), "b": (403, "deny")}
        status, decision, version_a = probe(de_ip)
        if (status, decision) != expected["a"]:
            die(f"release a answers {status} {decision}, expected 200 allow")
        snap = json.loads(http(ADMIN_PORT, "/admin/snapshot")[2])
        print(f"== serving release a: version {version_a}, {snap['counts']['tracks']} tracks, "
              f"build {snap['build_ms']} ms", flush=True)

        delay_ms = max(1, round(CONNS * 1000 / RATE))
        wrk_cmd = ["wrk", "-t2", f"-c{CONNS}", "-d600s", "--timeout", "5s", "--latency",
                   "-s", os.path.join(HERE, "reload_swap.lua"),
                   f"http://127.0.0.1:{PORT}/v1/authz", "--", IPS, TRACK, str(delay_ms)]
        print(f"== {' '.join(wrk_cmd[:-4])} ... ({CONNS} connections x 1 request per "
              f"{delay_ms} ms ~ {CONNS * 1000 // delay_ms} req/s)", flush=True)
        wrk_out = open(os.path.join(work, "wrk.txt"), "w")
        wrk = subprocess.Popen(wrk_cmd, stdout=wrk_out, stderr=subprocess.STDOUT)

        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], rss_kb(server.pid, "VmRSS"))
                except OSError:
                    return
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        time.sleep(3)
        steady = rss_kb(server.pid, "VmRSS")
        sampler.start()

        versions = {"a": version_a}
        settle = []
        builds = []
        current = "a"
        started = time.monotonic()
        for n in range(1, SWAPS + 1):
            current = "b" if current == "a" else "a"
            t0 = time.monotonic()
            swap(work, current)
            while True:
                got = probe(de_ip)
                if got[:2] == expected[current]:
                    break
                if time.monotonic() - t0 > SETTLE_S:
                    die(f"swap {n}: release {current} not served after {SETTLE_S} s "
                        f"(still {got})")
                time.sleep(0.01)
            settle.append(time.monotonic() - t0)
            versions.setdefault(current, got[2])
            if versions[current] != got[2]:
                die(f"swap {n}: release {current} has version {got[2]}, "
                    f"before {versions[current]}")
            # The answer flips at the swap; the reload's record is written just after it.
            while True:
                last = json.loads(http(ADMIN_PORT, "/admin/snapshot")[2])["last_reload"]
                if last and last["version"] == got[2]:
                    break
                if time.monotonic() - t0 > SETTLE_S:
                    die(f"swap {n}: no reload record for version {got[2]}: {last}")
                time.sleep(0.01)
            if last["result"] != "ok":
                die(f"swap {n}: reload {last}")
            builds.append(last["build_ms"])
            print(f"-- swap {n:2}: release {current} served after {settle[-1] * 1000:6.0f} ms "
                  f"(build {last['build_ms']} ms)", flush=True)
            time.sleep(DWELL_S)
        elapsed = time.monotonic() - started
        wrk.send_signal(signal.SIGINT)
        wrk.wait(timeout=30)
        stop.set()
        sampler.join()
        hwm = rss_kb(server.pid, "VmHWM")
        out = open(os.path.join(work, "wrk.txt")).read()
    finally:
        if wrk and wrk.poll() is None:
            wrk.kill()
        if server:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if KEEP:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    failures = []
    tally = {}
    for kind, count in re.findall(r"^TALLY (.+) (\d+)$", out, re.M):
        tally[kind] = int(count)
    allowed = {f"200 allow {versions['a']}", f"403 deny {versions['b']}"}
    total = sum(tally.values())
    for kind, count in sorted(tally.items()):
        mark = "ok" if kind in allowed else "UNEXPECTED"
        print(f"   {count:9} x {kind}  {mark}")
        if kind not in allowed:
            failures.append(f"{count} answers '{kind}'")
    for kind in allowed:
        if kind not in tally:
            failures.append(f"no answer '{kind}' at all: the swaps were not seen under load")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        failures.append(f"wrk socket errors: {errors.group(1)}")
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    denied = sum(c for k, c in tally.items() if k.startswith("403 "))
    if non and int(non.group(1)) != denied:
        failures.append(f"{non.group(1)} non-2xx answers but {denied} denials")
    lat = {p: int(v) for p, v in re.findall(r"^LATENCY_US (\S+) (\d+)$", out, re.M)}
    if total == 0 or not lat:
        failures.append("wrk reported nothing:\n" + out)

    def ms(us):
        return f"{us / 1000:.2f} ms"

    settle_ms = sorted(s * 1000 for s in settle)
    print("== summary")
    print(f"change: {CHANGE}, catalogue: {TRACKS} tracks")
    print(f"requests: {total} in {elapsed:.1f} s under {SWAPS} swaps "
          f"({total / elapsed:.0f} req/s), {len(tally)} kinds of answer")
    if lat:
        print("latency over the whole run: p50 {} p90 {} p99 {} p99.9 {} max {}".format(
            ms(lat["50"]), ms(lat["90"]), ms(lat["99"]), ms(lat["99.9"]), ms(lat["max"])))
    print(f"swap -> new answer served: median {settle_ms[len(settle_ms) // 2]:.0f} ms, "
          f"max {settle_ms[-1]:.0f} ms (includes the 400 ms watcher debounce)")
    print(f"snapshot build: median {sorted(builds)[len(builds) // 2]} ms, max {max(builds)} ms")
    print(f"memory: steady {steady / 1024:.0f} MB before the first swap, peak during the swaps "
          f"{peak[0] / 1024:.0f} MB (sampled every 20 ms), peak/steady {peak[0] / steady:.2f}; "
          f"VmHWM {hwm / 1024:.0f} MB (includes the start-up build)")
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    if failures:
        for f in failures:
            print("FAIL: " + f)
        sys.exit(1)
    print("OK: every answer was one of the two releases', every swap was served")


if __name__ == "__main__":
    main()
