#!/usr/bin/env python3
"""Level 2: stores $GREETING in kv (found through the dep KV_PORT) and publishes the URL it
can be read from as the attribute `greeting_url`. It exits once done."""
import json, os, urllib.request

url = f"http://127.0.0.1:{os.environ['KV_PORT']}/greeting"
req = urllib.request.Request(url, data=os.environ["GREETING"].encode(), method="PUT")
urllib.request.urlopen(req, timeout=5)
with open(os.environ["EPU_SERVICE_OUTPUT"], "w") as f:
    json.dump({"greeting_url": url}, f)
print(f"announcer: stored the greeting at {url}")
