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
