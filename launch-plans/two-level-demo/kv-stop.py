#!/usr/bin/env python3
"""kv's terminate program: asks it to shut down cleanly."""
import json, os, urllib.request

port = json.load(open(os.environ["EPU_SERVICE_OUTPUT"]))["port"]
req = urllib.request.Request(f"http://127.0.0.1:{port}/shutdown", method="POST")
print(urllib.request.urlopen(req, timeout=5).read().decode())
