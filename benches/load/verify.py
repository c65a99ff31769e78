#!/usr/bin/env python3
"""Checks that the gates compared by authz_vs_nginx.sh give the same answers.

    verify.py IPS_FILE NGINX_PORT REGIONGATE_PORT

Sends every address of IPS_FILE (ADDRESS COUNTRY LAT LON) once to the nginx geoip2 gate, once
to regiongate without and once with a Geo-Hint, and counts allow/deny per gate and the
addresses where the answers differ. Exit status 1 if any differ. Standard library only.
"""
import http.client
import sys
import time

URI = "/audio/QZNW52400010/seg-1.mp4"


def ask(conn, ip, hint=None):
    headers = {"X-Original-URI": URI, "X-Original-Method": "GET", "X-Forwarded-For": ip}
    if hint:
        headers["Geo-Hint"] = hint
    conn.request("GET", "/v1/authz", headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status


def main():
    path, nginx_port, rg_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rows = [l.split() for l in open(path) if l.strip()]
    ng = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=5)
    rg = http.client.HTTPConnection("127.0.0.1", rg_port, timeout=5)
    now = int(time.time())
    counts = {"nginx": {}, "regiongate ip": {}, "regiongate gps": {}}
    differ = []
    for ip, cc, lat, lon in rows:
        a = ask(ng, ip)
        b = ask(rg, ip)
        c = ask(rg, ip, f"gps={lat},{lon}; acc=25; ts={now}")
        for k, s in (("nginx", a), ("regiongate ip", b), ("regiongate gps", c)):
            counts[k][s] = counts[k].get(s, 0) + 1
        if not (a == b == c):
            differ.append((ip, cc, a, b, c))
    for k, v in counts.items():
        print(f"  {k:15} " + ", ".join(f"{s}: {n}" for s, n in sorted(v.items())))
    print(f"  addresses: {len(rows)}; answers differ for {len(differ)}")
    for d in differ[:10]:
        print("   ", *d)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
