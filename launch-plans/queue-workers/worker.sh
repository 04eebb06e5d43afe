#!/bin/sh
# Starts the queue worker, which cargo builds next to epu (`cargo build -p queue-workers`).
bin="${QUEUE_WORKER_BIN:-$(dirname "$EPU_BIN")/queue-worker}"
if [ ! -x "$bin" ]; then
    echo "queue-worker is not built (looked for $bin): run cargo build -p queue-workers" >&2
    exit 1
fi
exec "$bin"
