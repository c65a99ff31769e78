#!/bin/bash
# HEALTHCHECK of the regiongate image: GET /healthz on the admin listener, over bash's
# /dev/tcp (the slim image has no curl or wget, and regiongate has no probe subcommand).
# Exit 0 healthy, 1 not. The port is REGIONGATE_HEALTH_PORT, else the port of
# REGIONGATE_ADMIN_LISTEN, else 9090 (the image's config); the admin listener must accept
# connections on 127.0.0.1 (0.0.0.0 does, as in the image's config).
set -euo pipefail
port=${REGIONGATE_HEALTH_PORT:-}
if [[ -z $port && -n ${REGIONGATE_ADMIN_LISTEN:-} ]]; then port=${REGIONGATE_ADMIN_LISTEN##*:}; fi
port=${port:-9090}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 2 status <&3
[[ $status == "HTTP/1.1 200 "* ]]
