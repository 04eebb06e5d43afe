#!/usr/bin/env python3
"""kv's readiness check: it answers /health on the port it published."""
import json, os, urllib.request

port = json.load(open(os.environ["EPU_SERVICE_OUTPUT"]))["port"]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
    assert r.read() == b"ok"
print(f"kv answers on port {port}")
