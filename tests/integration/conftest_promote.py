"""Fixtures of the promotion area: a local HTTP server that records webhook posts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Recorder:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.requests: list[dict] = []
        self.status = 200
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def bodies(self, path: str | None = None) -> list[dict]:
        with self.lock:
            return [r["json"] for r in self.requests if path is None or r["path"] == path]


@pytest.fixture
def webhook_server():
    """Yields a Recorder; POSTs to any path are stored with their JSON body."""
    rec: Recorder

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.lock:
                rec.requests.append({"path": self.path, "headers": dict(self.headers),
                                     "json": json.loads(body or b"null")})
            self.send_response(rec.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Recorder(server)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield rec
    server.shutdown()
    server.server_close()
