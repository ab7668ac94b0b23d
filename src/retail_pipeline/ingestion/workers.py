"""Validation in worker processes, so that it runs beside the warehouse writes.

Validation is Python work and holds the GIL; DuckDB's Python client takes the GIL back between
the small tasks of every query, so a validating thread and a writing thread in one process end
up taking turns (measured here: no overlap at all). Worker processes do not share the GIL: each
validates its own blocks while the main process writes. Small loads skip the pool and validate
in one thread instead.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from retail_pipeline.settings import settings

T = TypeVar("T")

# forkserver: the workers are forked from a clean single-threaded server process that has the
# validator imported, never from the loader itself. Forking the loader would copy a process
# whose other threads (librdkafka's, DuckDB's, Arrow's allocator) may hold locks at that
# instant; measured here, a Kafka consumer's forked worker crashed in pickle. Like spawn, the
# workers import the caller's ``__main__`` once, so a script that loads files must keep its
# work under ``if __name__ == "__main__":``.
_CONTEXT = "forkserver"
# The server ignores Ctrl-C before it imports the validator (fork_server.py), then imports it.
_PRELOAD = ["retail_pipeline.ingestion.fork_server", "retail_pipeline.ingestion.staging"]


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: leave when the loader dies (a SIGKILL leaves no one to stop us).

    Ctrl-C reaches the whole process group; the loader handles it and stops the pool, so the
    workers ignore it rather than each printing a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            try:
                os.kill(parent, 0)  # the loader is not our parent: the fork server is
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # it exists
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block ends, then raise it.

    ``submit`` may start a worker process, writing its pickled state to the fork server; a
    KeyboardInterrupt in the middle left a worker the pool never registered, so the loader
    exited without waiting for it and the half-started worker printed a traceback (its
    semaphores gone) beside "aborted". Only the main thread receives signals.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def default_workers() -> int:
    """Worker processes for validation: ``RETAIL_VALIDATION_WORKERS``, else the core count."""
    value = settings().validation_workers
    return value if value is not None else (os.cpu_count() or 1)


class Validators:
    """Where validation runs: a process pool for big loads, one thread otherwise."""

    def __init__(self, processes: int) -> None:
        self._executor: Executor
        if processes > 0:
            context = multiprocessing.get_context(_CONTEXT)
            context.set_forkserver_preload(_PRELOAD)  # takes effect when the server starts
            self._executor = ProcessPoolExecutor(
                processes,
                mp_context=context,
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")
        self.processes = processes

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a worker (a Ctrl-C meanwhile is raised once it is handed over)."""
        with _ctrl_c_deferred():
            return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Stop the workers (pending work is cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Validators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
