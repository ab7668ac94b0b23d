"""retail_pipeline.http_server: Ctrl-C stops the server whenever it lands."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from retail_pipeline.http_server import BoundedHTTPServer


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_ctrl_c_while_a_request_thread_starts_stops_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load the request thread can answer before the main thread is back from starting
    it; a Ctrl-C landing then used to be swallowed (the slot freed twice: ValueError, which
    serve_forever reports as a failed request and serves on)."""
    server = BoundedHTTPServer(("127.0.0.1", 0), _Ok, max_connections=2)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    answers: list[bytes] = []
    client = threading.Thread(target=lambda: answers.append(urllib.request.urlopen(url).read()))
    client.start()
    start = threading.Thread.start

    def start_then_ctrl_c(thread: threading.Thread) -> None:
        start(thread)
        thread.join()  # the request is answered and its slot freed...
        raise KeyboardInterrupt  # ...when Ctrl-C lands, still inside start()

    monkeypatch.setattr(threading.Thread, "start", start_then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            server.handle_request()
    finally:
        monkeypatch.undo()
        client.join(timeout=10)
        server.server_close()
    assert answers == [b"ok"]
    assert server._slots.acquire(blocking=False) and server._slots.acquire(blocking=False)
