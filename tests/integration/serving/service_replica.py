"""A tiny HTTP/1.1 replica for the Service tests: listens on $PORT, answers ``GET /healthz``
with 200 once started (after ``STARTUP_DELAY_S`` seconds), anything else with its revision,
replica name and process id as JSON (``?sleep=SECONDS``: after that long). Standard library
only."""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response (flushed after each), without Nagle's delay on keep-alive.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if "sleep=" in self.path:  # ?sleep=SECONDS: a slow answer (load that stays in flight)
            time.sleep(float(self.path.split("sleep=", 1)[1].split("&", 1)[0]))
        if self.path == "/healthz":
            body = b"ok"
        else:
            body = json.dumps(
                {
                    "revision": os.environ.get("PHALANX_REVISION", ""),
                    "replica": os.environ.get("PHALANX_REPLICA", ""),
                    "version": os.environ.get("VERSION", ""),
                    "pid": os.getpid(),
                    "path": self.path,
                }
            ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def main() -> None:
    time.sleep(float(os.environ.get("STARTUP_DELAY_S", "0")))
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
