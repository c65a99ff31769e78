#!/usr/bin/env bash
# Refreshes regions/ip/geoip.mmdb, the embedded default IP → country database, from the npm
# package @ip-location-db/geo-whois-asn-country-mmdb (combined IPv4 + IPv6 file; CC BY 4.0 data
# from the RIRs via NRO). Usage: regions/scripts/fetch_ip_db.sh [VERSION]
set -euo pipefail
version="${1:-2.3.2026061719}"
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@ip-location-db/geo-whois-asn-country-mmdb@${version}" >/dev/null && tar xzf ./*.tgz)
src="$tmp/package/geo-whois-asn-country.mmdb"
test -s "$src"
# Write then rename: a running regiongate has the old file mapped.
cp "$src" "$here/ip/geoip.mmdb.tmp"
mv "$here/ip/geoip.mmdb.tmp" "$here/ip/geoip.mmdb"
{
  echo "package: @ip-location-db/geo-whois-asn-country-mmdb@${version}"
  echo "file: geo-whois-asn-country.mmdb"
  echo "sha256: $(sha256sum "$here/ip/geoip.mmdb" | cut -d' ' -f1)"
} > "$here/ip/SOURCE"
cat "$here/ip/SOURCE"
