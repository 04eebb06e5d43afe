#!/bin/sh
# A worker of the demo: it reads the greeting that level 2 stored, from the URL it got in its
# environment (GREETING_URL, an attribute of the plan), then sends heartbeats.
greeting=$(python3 -c 'import os, urllib.request; print(urllib.request.urlopen(os.environ["GREETING_URL"], timeout=5).read().decode())')
echo "worker $EPU_NODE_ID: kv on port $KV_PORT says: $greeting"
trap 'exit 0' TERM INT
while true; do
    "$EPU_BIN" heartbeat || echo "worker $EPU_NODE_ID: heartbeat failed"
    sleep "${HEARTBEAT_SECONDS:-1}" &
    wait $!
done
