#!/usr/bin/env python3
"""Checks that the gates compared by authz_vs_nginx.sh give the same answers.

    verify.py IPS_FILE NGINX_PORT REGIONGATE_PORT

Sends every address of IPS_FILE (ADDRESS COUNTRY LAT LON) once to the nginx geoip2 gate, once
to regiongate without and once with a Geo-Hint, as an auth subrequest and as the client's
preflight (GET /v1/tracks/QZNW52400010/playability: the "decision" of its JSON body), and counts
allow/deny per gate and the addresses where the answers differ. Exit status 1 if any differ.
Standard library only.
"""
import http.client
import json
import sys
import time

URI = "/audio/QZNW52400010/seg-1.mp4"
PREFLIGHT = "/v1/tracks/QZNW52400010/playability"


def ask(conn, ip, hint=None):
    headers = {"X-Original-URI": URI, "X-Original-Method": "GET", "X-Forwarded-For": ip}
    if hint:
        headers["Geo-Hint"] = hint
    conn.request("GET", "/v1/authz", headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status


def preflight(conn, ip, hint=None):
    """The preflight's decision as the status the auth subrequest would give (200 or 403)."""
    headers = {"X-Forwarded-For": ip}
    if hint:
        headers["Geo-Hint"] = hint
    conn.request("GET", PREFLIGHT, headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        return r.status
    return {"allow": 200, "deny": 403}.get(json.loads(body).get("decision"), 0)


def main():
    path, nginx_port, rg_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rows = [l.split() for l in open(path) if l.strip()]
    ng = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=5)
    rg = http.client.HTTPConnection("127.0.0.1", rg_port, timeout=5)
    now = int(time.time())
    names = ["nginx", "regiongate ip", "regiongate gps",
             "nginx preflight", "rg preflight ip", "rg preflight gps"]
    counts = {k: {} for k in names}
    differ = []
    for ip, cc, lat, lon in rows:
        hint = f"gps={lat},{lon}; acc=25; ts={now}"
        got = [ask(ng, ip), ask(rg, ip), ask(rg, ip, hint),
               preflight(ng, ip), preflight(rg, ip), preflight(rg, ip, hint)]
        for k, s in zip(names, got):
            counts[k][s] = counts[k].get(s, 0) + 1
        if len(set(got)) != 1:
            differ.append((ip, cc, *got))
    for k, v in counts.items():
        print(f"  {k:16} " + ", ".join(f"{s}: {n}" for s, n in sorted(v.items())))
    print(f"  addresses: {len(rows)}; answers differ for {len(differ)}")
    for d in differ[:10]:
        print("   ", *d)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
