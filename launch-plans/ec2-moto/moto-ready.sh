#!/bin/sh
# moto answers on the URL it published.
exec "$(dirname "$0")/python.sh" -c '
import json, os, urllib.request
url = json.load(open(os.environ["EPU_SERVICE_OUTPUT"]))["url"]
urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
print("moto answers at", url)'
