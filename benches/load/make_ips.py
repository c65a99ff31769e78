#!/usr/bin/env python3
"""Writes benches/load/ips.txt: 1000 public IPv4 addresses for the load benchmark.

Half are in the DACH countries (DE, AT, CH, LI: where track QZNW52400010 is licensed), half in
other countries, all looked up in regions/ip/geoip.mmdb (the database both regiongate and the
nginx geoip2 gate use). Each line: `ADDRESS COUNTRY LAT LON`, where LAT,LON is a point in a big
city of that country (a small deterministic offset added): the Geo-Hint of the GPS run, so that
the hint is plausible and decides (a polygon lookup) on every request.

Needs the maxminddb module (Debian: apt-get install python3-maxminddb; run with /usr/bin/python3).
Deterministic (fixed seed): rerunning gives the same file for the same database.
"""
import ipaddress
import os
import random
import sys

import maxminddb

HERE = os.path.dirname(os.path.abspath(__file__))
MMDB = os.path.join(HERE, "..", "..", "regions", "ip", "geoip.mmdb")
OUT = os.path.join(HERE, "ips.txt")

# Points well inside each country (city centres), (lat, lon).
CITIES = {
    "DE": [(52.5200, 13.4050), (48.1372, 11.5755), (53.5511, 9.9937), (50.9375, 6.9603)],
    "AT": [(48.2082, 16.3738), (47.0707, 15.4395), (47.2692, 11.4041)],
    "CH": [(47.3769, 8.5417), (46.9480, 7.4474), (46.2044, 6.1432)],
    "LI": [(47.1410, 9.5209)],
    "US": [(38.9072, -77.0369), (39.0997, -94.5786), (34.0522, -118.2437), (41.8781, -87.6298)],
    "CN": [(39.9042, 116.4074), (31.2304, 121.4737), (30.5728, 104.0668)],
    "JP": [(35.6762, 139.6503), (34.6937, 135.5023)],
    "KR": [(37.5665, 126.9780)],
    "GB": [(51.5074, -0.1278), (53.4808, -2.2426)],
    "FR": [(48.8566, 2.3522), (45.7640, 4.8357)],
    "NL": [(52.3676, 4.9041)],
    "IT": [(41.9028, 12.4964), (45.4642, 9.1900)],
    "ES": [(40.4168, -3.7038)],
    "PL": [(52.2297, 21.0122)],
    "SE": [(59.3293, 18.0686)],
    "RU": [(55.7558, 37.6173)],
    "BR": [(-15.7939, -47.8828), (-23.5505, -46.6333)],
    "CA": [(45.4215, -75.6972), (43.6532, -79.3832)],
    "AU": [(-35.2809, 149.1300), (-33.8688, 151.2093)],
    "IN": [(28.6139, 77.2090), (19.0760, 72.8777)],
    "MX": [(19.4326, -99.1332)],
    "ZA": [(-25.7479, 28.2293)],
    "TW": [(25.0330, 121.5654)],
    "TR": [(39.9334, 32.8597)],
    "VN": [(21.0278, 105.8342)],
}
DACH = {"DE", "AT", "CH", "LI"}
WANT_DACH, WANT_OTHER = 500, 500


def main():
    rng = random.Random(20261129)
    reader = maxminddb.open_database(MMDB)
    dach, other, seen = [], [], set()
    tries = 0
    while len(dach) < WANT_DACH or len(other) < WANT_OTHER:
        tries += 1
        if tries > 5_000_000:
            sys.exit("not enough addresses found")
        ip = ipaddress.IPv4Address(rng.getrandbits(32))
        if not ip.is_global or ip.is_multicast or ip in seen:
            continue
        rec = reader.get(str(ip))
        cc = rec.get("country_code") if isinstance(rec, dict) else None
        if cc not in CITIES:
            continue
        bucket = dach if cc in DACH else other
        if len(bucket) >= (WANT_DACH if cc in DACH else WANT_OTHER):
            continue
        seen.add(ip)
        lat, lon = rng.choice(CITIES[cc])
        lat += rng.uniform(-0.005, 0.005)
        lon += rng.uniform(-0.005, 0.005)
        bucket.append(f"{ip} {cc} {lat:.5f} {lon:.5f}")
    lines = dach + other
    rng.shuffle(lines)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{OUT}: {len(lines)} addresses ({len(dach)} DACH) from {tries} candidates")


if __name__ == "__main__":
    main()
