"""What the local services (the Kafka broker, PostgreSQL) share: the source checkout an editable
install lives in, where they keep their homes (``.kafka/``, ``.postgres/``), and port checks."""

from __future__ import annotations

import contextlib
import fcntl
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil


def checkout_root(*markers: str) -> Path | None:
    """The nearest parent of this package holding ``pyproject.toml`` and every one of
    ``markers`` (paths relative to it); None for a package installed from a wheel."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and all(
            (parent / marker).exists() for marker in markers
        ):
            return parent
    return None


def local_home(name: str, *markers: str) -> Path:
    """A local service's home: ``<checkout>/.<name>``, else ``~/.cache/retail-pipeline/<name>``."""
    root = checkout_root(*markers)
    if root is not None:
        return root / f".{name}"
    return Path.home() / ".cache" / "retail-pipeline" / name


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (as the service would, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def live_command_line(pid: int) -> list[str] | None:
    """The command line of process ``pid`` while it is alive (not a zombie), else None."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return list(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@contextlib.contextmanager
def home_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (one start, stop or fetch of a home at a
    time, across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LOG_EXCERPT_BYTES = 1 << 20
"""How much of a log's end :func:`log_excerpt` reads at most (a log can be any size)."""


def log_excerpt(
    log_file: Path, offset: int, patterns: tuple[str, ...], prefix: re.Pattern[str] | None = None
) -> str:
    """The most telling line a service wrote to ``log_file`` after ``offset``: the first holding
    one of ``patterns`` (tried in order), else the last line; ``prefix`` (a timestamp, a pid) is
    cut off each line first. Reads at most the last ``LOG_EXCERPT_BYTES``; 300 characters."""
    try:
        with log_file.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(offset, size - LOG_EXCERPT_BYTES))
            lines = handle.read(LOG_EXCERPT_BYTES).decode(errors="replace").splitlines()
    except OSError:
        return "no log"
    lines = [(prefix.sub("", line) if prefix else line).strip() for line in lines]
    for pattern in patterns:
        for line in lines:
            if pattern in line:
                return line[:300]
    return lines[-1][:300] if lines else "no output"
