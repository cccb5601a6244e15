"""A stand-in bridge worker for the operator's e2e tests, until the real worker
image lands: stdlib only, speaks the parts of the protocol the operator reads
(/healthz, /readyz, /v1/stats, /v1/sessions) plus a ping command."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

START = time.time()
NAME = os.environ.get("HOSTNAME", "worker")
CAPACITY = int(os.environ.get("BRIDGEPOOL_WORKER_CAPACITY", "1"))
REQUESTS = [0]


def stats() -> dict[str, Any]:
    return {
        "worker": NAME,
        "state": "ready",
        "accepting_sessions": True,
        "in_flight": 0,
        "capacity": CAPACITY,
        "requests_total": REQUESTS[0],
        "errors_total": 0,
        "errors_by_category": {},
        "uptime_seconds": time.time() - START,
        "memory_rss_bytes": 1,
        "sessions": 0,
        "max_sessions": 1000,
        "session_ttl_seconds": 300.0,
        "recycle": {"due": False, "reason": None},
    }


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-BridgePool-Worker", NAME)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"ok": True})
        elif self.path == "/readyz":
            self._send(
                200,
                {
                    "worker": NAME,
                    "ready": True,
                    "state": "ready",
                    "capacity": CAPACITY,
                    "in_flight": 0,
                    "accepting_sessions": True,
                },
            )
        elif self.path == "/v1/stats":
            self._send(200, stats())
        elif self.path == "/v1/sessions":
            self._send(200, {"worker": NAME, "sessions": []})
        else:
            self._send(404, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        REQUESTS[0] += 1
        self._send(200, {"id": req.get("id"), "success": True, "result": "pong", "error": None})

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
