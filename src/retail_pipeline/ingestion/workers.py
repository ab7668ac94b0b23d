"""Validation in worker processes, so that it runs beside the warehouse writes.

Validation is Python work and holds the GIL; DuckDB's Python client takes the GIL back between
the small tasks of every query, so a validating thread and a writing thread in one process end
up taking turns (measured here: no overlap at all). Worker processes do not share the GIL: each
validates its own blocks while the main process writes. Small loads skip the pool and validate
in one thread instead.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# fork: the workers start at once with the validator imported, and, unlike spawn and
# forkserver, never re-run the caller's __main__ (a script without a main guard would load
# itself again in every worker). The workers only run the validator (msgspec, Arrow).
_CONTEXT = "fork"


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: leave when the loader dies (a SIGKILL leaves no one to stop us).

    Ctrl-C reaches the whole process group; the loader handles it and stops the pool, so the
    workers ignore it rather than each printing a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def default_workers() -> int:
    """Worker processes for validation: ``$RETAIL_VALIDATION_WORKERS``, else the core count."""
    value = os.environ.get("RETAIL_VALIDATION_WORKERS")
    return max(0, int(value)) if value else (os.cpu_count() or 1)


class Validators:
    """Where validation runs: a process pool for big loads, one thread otherwise."""

    def __init__(self, processes: int) -> None:
        self._executor: Executor
        if processes > 0:
            self._executor = ProcessPoolExecutor(
                processes,
                mp_context=multiprocessing.get_context(_CONTEXT),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")
        self.processes = processes

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a worker."""
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Stop the workers (pending work is cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Validators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
