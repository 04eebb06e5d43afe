"""An HTTP proxy between epu and an EC2 endpoint that injects faults, for the ec2 tests.

Usage: ec2_fault_proxy.py UPSTREAM_URL PORT_FILE
It listens on a free port of 127.0.0.1 and writes the port to PORT_FILE. Its mode is set with
`POST /__proxy/mode` (body: pass | hang-run | lose-run | chaos:SEED):
- pass: every request is forwarded.
- hang-run: RunInstances is never forwarded and never answered.
- lose-run: RunInstances is forwarded, and its answer never comes.
- chaos:SEED: each request, by a seeded draw: 500 before forwarding; forwarded, then 500 (the
  answer is lost); 503 RequestLimitExceeded (throttling); a 1.5 s delay, then forwarded; or
  forwarded as is.
`GET /__proxy/stats` gives the count of each fault injected and of RunInstances forwarded.
"""
import http.client, http.server, json, random, sys, threading, time, urllib.parse

upstream = urllib.parse.urlparse(sys.argv[1])
state = {"mode": "pass", "rng": random.Random(0)}
stats = {}
lock = threading.Lock()

ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
)


def count(what):
    with lock:
        stats[what] = stats.get(what, 0) + 1


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="text/xml"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self, body):
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()

    def do_GET(self):
        if self.path == "/__proxy/stats":
            with lock:
                return self.reply(200, json.dumps(stats), "application/json")
        self.handle_request(b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/__proxy/mode":
            mode = body.decode().strip()
            with lock:
                state["mode"] = mode
                if mode.startswith("chaos:"):
                    state["rng"] = random.Random(int(mode.split(":", 1)[1]))
            return self.reply(200, mode, "text/plain")
        self.handle_request(body)

    def handle_request(self, body):
        is_run = b"Action=RunInstances" in body
        with lock:
            mode = state["mode"]
            draw = state["rng"].random()
        if is_run and mode == "hang-run":
            count("run-hung")
            time.sleep(3600)
            return
        if is_run and mode == "lose-run":
            self.forward(body)
            count("run-forwarded")
            count("run-lost")
            time.sleep(3600)
            return
        if mode.startswith("chaos:"):
            if draw < 0.15:
                count("500-before")
                return self.reply(500, ERROR.format(code="InternalError", message="injected"))
            if draw < 0.30:
                self.forward(body)
                if is_run:
                    count("run-forwarded")
                count("500-after")
                return self.reply(500, ERROR.format(code="InternalError", message="injected"))
            if draw < 0.45:
                count("throttled")
                return self.reply(
                    503, ERROR.format(code="RequestLimitExceeded", message="Request limit exceeded.")
                )
            if draw < 0.55:
                count("slow")
                time.sleep(1.5)
        status, headers, data = self.forward(body)
        if is_run:
            count("run-forwarded")
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
server.daemon_threads = True
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(sys.argv[2] + ".tmp", sys.argv[2])
server.serve_forever()
