#!/usr/bin/env python3
"""Level 1: a key-value store over HTTP on 127.0.0.1. It listens on a free port and publishes
it as the attribute `port` (a JSON object written to $EPU_SERVICE_OUTPUT)."""
import http.server, json, os, signal, sys, threading

data = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        key = self.path.lstrip("/")
        if key == "health":
            return self.reply(200, b"ok")
        if key not in data:
            return self.reply(404, b"no such key")
        self.reply(200, data[key])

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data[self.path.lstrip("/")] = body
        self.reply(204, b"")

    def do_POST(self):
        if self.path == "/shutdown":
            self.reply(200, b"bye")
            threading.Thread(target=server.shutdown).start()
        else:
            self.reply(404, b"")

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("kv:", fmt % args, flush=True)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
out = os.environ["EPU_SERVICE_OUTPUT"]
with open(out + ".tmp", "w") as f:
    json.dump({"port": server.server_address[1]}, f)
os.rename(out + ".tmp", out)
print(f"kv: listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
print("kv: stopped", flush=True)
