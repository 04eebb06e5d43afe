#!/bin/sh
# Level 2: the simulated workers of every running epu instance on moto.
exec "$(dirname "$0")/python.sh" "$(dirname "$0")/heartbeats.py"
