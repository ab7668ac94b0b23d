"""The threaded HTTP server both local servers (the dashboard, the reference API) run on.

A thread per connection, at most ``max_connections`` at once: past that a connection gets a
JSON 503 at once and is closed, so a flood of slow clients pins a bounded number of threads.
Errors outside a request (a client that went away or timed out) stay off the terminal; each
handler answers what it can as JSON.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_BUSY_BODY = b'{"error": "too many connections: try again soon"}'
BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` serving at most ``max_connections`` connections at once."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread of its own, or answer 503 at once when every slot is taken."""
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1)
                request.sendall(BUSY_RESPONSE)
            self.shutdown_request(request)
            return
        # Only a thread that did not start leaves its slot here. Ctrl-C landing while a thread
        # starts must not free the slot too: the semaphore's ValueError would replace the
        # KeyboardInterrupt, and serve_forever would swallow it as a failed request.
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # can't start new thread
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a connection that failed outside a request is no news for the terminal."""
