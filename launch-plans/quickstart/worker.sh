#!/bin/sh
# A quickstart worker: it "works" and sends a heartbeat every HEARTBEAT_SECONDS.
# The daemon gives it EPU_NODE_ID, EPU_DOMAIN, EPU_STATE_DIR, EPU_API_SOCKET and EPU_BIN.
interval="${HEARTBEAT_SECONDS:-1}"
trap 'echo "worker $EPU_NODE_ID: stopping"; exit 0' TERM INT
echo "worker $EPU_NODE_ID of $EPU_DOMAIN: started (pid $$)"
while true; do
    "$EPU_BIN" heartbeat || echo "worker $EPU_NODE_ID: heartbeat failed"
    sleep "$interval" &
    wait $!
done
