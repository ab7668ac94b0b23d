"""A local alert receiver: a tiny HTTP server on 127.0.0.1 that records every JSON POST."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    """Each POST: ``path``, ``content_type`` and the decoded ``json`` body."""
    status: int = 200
    """What the receiver answers."""
    stall: threading.Event | None = None
    """When set to an Event, the receiver waits on it before answering (a stuck receiver)."""


@contextmanager
def receiver(path: str = "/hooks/T0/B0/s3cr3t") -> Iterator[Receiver]:
    """A receiver at ``http://127.0.0.1:<port><path>``, stopped afterwards."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got = box[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if got.stall is not None:
                got.stall.wait(30)
            got.posts.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "json": json.loads(body),
                }
            )
            self.send_response(got.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.append(Receiver(f"http://127.0.0.1:{server.server_port}{path}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        if box[0].stall is not None:
            box[0].stall.set()
        server.shutdown()
        server.server_close()
