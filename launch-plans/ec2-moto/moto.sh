#!/bin/sh
# Level 1: moto's EC2 server on a free port of 127.0.0.1; publishes its URL.
set -e
here="$(dirname "$0")"
port="$("$here/python.sh" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo "{\"url\": \"http://127.0.0.1:$port\"}" > "$EPU_SERVICE_OUTPUT"
exec "$here/python.sh" -m moto.server -H 127.0.0.1 -p "$port"
