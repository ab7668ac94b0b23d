"""Ctrl-C that is never lost.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be.
Where it lands in a weakref callback, a ``__del__`` or an import lock's clean-up, Python prints
"Exception ignored in ..." and carries on: a command pressed Ctrl-C on then ran to the end and
exited 0. The command line installs :func:`on_sigint` for its whole run: it remembers the signal
before raising, so a loop may stop at its next safe point (:func:`check`) and the command line
still reports "aborted" (exit 130) if the exception itself was swallowed.

Handlers that replace SIGINT for a while (defer it, finish a batch first) call :func:`note`, so
the memory is the same whichever handler saw it. A command whose normal stop is Ctrl-C (a
server) calls :func:`handled` once it has stopped cleanly.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["check", "handled", "install", "note", "on_sigint", "pending"]

_seen = threading.Event()


def on_sigint(signum: int, frame: FrameType | None) -> None:
    """The SIGINT handler: remember, then raise KeyboardInterrupt as Python's default does."""
    _seen.set()
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT with :func:`on_sigint` (main thread only: elsewhere it is not ours)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_sigint)


def note() -> None:
    """Remember a Ctrl-C that another handler received."""
    _seen.set()


def pending() -> bool:
    """Whether a Ctrl-C came and was not handled."""
    return _seen.is_set()


def check() -> None:
    """At a safe point (between transactions): raise KeyboardInterrupt if a Ctrl-C came, even
    one whose exception Python swallowed."""
    if _seen.is_set():
        raise KeyboardInterrupt


def handled() -> None:
    """Forget the Ctrl-C: it was this command's normal way to stop, and it stopped cleanly."""
    _seen.clear()


class GracefulStop:
    """SIGTERM or a first Ctrl-C asks a long-running command (``ingest --kafka``, ``run``) to
    finish what it has in hand and stop: :attr:`stop` is set, and for a Ctrl-C also
    :attr:`interrupted` (the command then exits 130), the Ctrl-C is recorded and SIGINT goes
    back to :func:`on_sigint`, so a second one aborts at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.interrupted = threading.Event()

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self.interrupted.set()
            note()
            signal.signal(signal.SIGINT, on_sigint)  # a second one aborts now
        self.stop.set()

    def install(self) -> None:
        """Handle SIGTERM and SIGINT with this (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self)
