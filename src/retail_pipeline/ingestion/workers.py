"""Validation in worker processes, so that it runs beside the warehouse writes.

Validation is Python work and holds the GIL; DuckDB's Python client takes the GIL back between
the small tasks of every query, so a validating thread and a writing thread in one process end
up taking turns (measured here: no overlap at all). Worker processes do not share the GIL: each
validates its own blocks while the main process writes. Small loads skip the pool and validate
in one thread instead.

A worker hands its Arrow tables back through shared memory (:func:`_reduce_table`), not
through the result pipe: a pickle copies a table four times (into the pickle, into and out of
the pipe, out of the pickle), on both processes' CPU.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import multiprocessing
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.reduction import ForkingPickler
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.ipc

from retail_pipeline import interrupts
from retail_pipeline.settings import settings

T = TypeVar("T")

# forkserver: the workers are forked from a clean single-threaded server process that has the
# validator imported, never from the loader itself. Forking the loader would copy a process
# whose other threads (librdkafka's, DuckDB's, Arrow's allocator) may hold locks at that
# instant; measured here, a Kafka consumer's forked worker crashed in pickle. The workers never
# import the caller's ``__main__`` (see _main_module_hidden): they run the validator only.
_CONTEXT = "forkserver"
# The server ignores Ctrl-C before it imports the validator (fork_server.py), then imports it.
_PRELOAD = ["retail_pipeline.ingestion.fork_server", "retail_pipeline.ingestion.staging"]
SHARED_MEMORY = "/dev/shm"
"""Where the workers write their results (a tmpfs); without it they go through the pipe."""

_results_prefix = ""
"""In a worker: where its pool's result files go, a path prefix ("" when there is none)."""
_results = itertools.count()


def _shared_prefix() -> str:
    """The path prefix of one pool's result files in shared memory (loader pid and a token of
    the pool), or "" where there is no shared memory. Files, never a directory: nothing is
    left behind by a loader killed before its first worker started."""
    if not (os.path.isdir(SHARED_MEMORY) and os.access(SHARED_MEMORY, os.W_OK | os.X_OK)):
        return ""
    return os.path.join(SHARED_MEMORY, f"retail-validate-{os.getpid()}-{secrets.token_hex(4)}-")


def _remove_results(prefix: str) -> None:
    """Remove the result files under ``prefix`` that nobody mapped."""
    for path in glob.glob(glob.escape(prefix) + "*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _mapped_table(path: str) -> pa.Table:
    """Loader side of :func:`_reduce_table`: the table a worker wrote, memory-mapped (its
    buffers are the file's pages, nothing is copied). The file is unlinked at once; the pages
    stay until the table is freed, so memory still follows the batches in hand."""
    try:
        return pyarrow.ipc.open_file(pa.memory_map(path)).read_all()
    finally:
        os.unlink(path)


def _reduce_table(table: pa.Table) -> tuple[Any, ...]:
    """Worker side: pickle ``table`` as the name of an Arrow IPC file in shared memory.

    A full tmpfs (or any failure to write) falls back to the ordinary pickle of the table.
    The file is created here, exclusively and for this user only, before Arrow writes it: in a
    directory everyone may write to, a name someone else created first (a file of theirs, a
    symlink) is refused, never written through or read back as a result; the directory's
    sticky bit keeps others from replacing the file afterwards.
    """
    path = f"{_results_prefix}{os.getpid()}-{next(_results)}.arrow"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError:
        return table.__reduce__()  # type: ignore[no-any-return]
    try:
        with pa.OSFile(path, "wb") as sink, pyarrow.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except (OSError, pa.ArrowException):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return table.__reduce__()  # type: ignore[no-any-return]
    return _mapped_table, (path,)


def _exit_with_parent(parent: int, results_prefix: str = "") -> None:
    """Worker initializer: leave when the loader dies (a SIGKILL leaves no one to stop us),
    removing the pool's unread results; send tables back as files under ``results_prefix``.

    Ctrl-C reaches the whole process group; the loader handles it and stops the pool, so the
    workers ignore it rather than each printing a traceback.
    """
    global _results_prefix
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if results_prefix:
        _results_prefix = results_prefix
        ForkingPickler.register(pa.Table, _reduce_table)  # this process's result pickles only

    def watch() -> None:
        while True:
            try:
                os.kill(parent, 0)  # the loader is not our parent: the fork server is
            except ProcessLookupError:
                if results_prefix:
                    _remove_results(results_prefix)
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

    def defer(signum: int, _frame: object) -> None:
        caught.append(signum)
        interrupts.note()

    previous = signal.signal(signal.SIGINT, defer)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without the caller's ``__main__`` script.

    multiprocessing makes each new worker run the parent's main script (by path) first, as
    ``__mp_main__``. Validation needs nothing from it, and for some callers importing it is
    fatal: in an Airflow task the main script is the ``airflow`` command, whose import
    initialises Airflow with the database URL a task is refused, so every worker died and the
    scheduled Kafka DAG failed (seen in the Docker stack's end-to-end run). Hiding the path
    while a worker starts makes multiprocessing skip that step; a main started with ``-m``
    (``__spec__`` set) is hidden the same way.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: main.__dict__.pop(name) for name in ("__file__",) if name in main.__dict__}
    spec = getattr(main, "__spec__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        main.__spec__ = spec


def default_workers() -> int:
    """Worker processes for validation: ``RETAIL_VALIDATION_WORKERS``, else the core count."""
    value = settings().validation_workers
    return value if value is not None else (os.cpu_count() or 1)


class Validators:
    """Where validation runs: a process pool for big loads, one thread otherwise."""

    def __init__(self, processes: int) -> None:
        self._executor: Executor
        self._results = ""
        if processes > 0:
            context = multiprocessing.get_context(_CONTEXT)
            context.set_forkserver_preload(_PRELOAD)  # takes effect when the server starts
            self._results = _shared_prefix()
            self._executor = ProcessPoolExecutor(
                processes,
                mp_context=context,
                initializer=_exit_with_parent,
                initargs=(os.getpid(), self._results),
            )
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")
        self.processes = processes

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a worker (a Ctrl-C meanwhile is raised once it is handed over)."""
        with _ctrl_c_deferred(), _main_module_hidden():
            return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Stop the workers (pending work is cancelled) and remove their results left unread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._results:
            _remove_results(self._results)

    def __enter__(self) -> Validators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
