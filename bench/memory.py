"""Benchmark: peak RSS of the loaders on hostile and huge inputs (issue 20: memory is bounded by
the batch, never by the input).

Each case makes its input, then runs one ``retail-pipeline`` command on it in a fresh process
with a fresh warehouse and prints that process's peak RSS (``ru_maxrss`` from ``wait4``), its
exit code, the time it took and the last line it printed. Validation worker processes, when a
load starts them, are separate processes and not counted. Nothing is asserted: the target is
<= 1 GiB per case; tests/ingestion/test_memory.py asserts smaller versions.

    python bench/memory.py                 # every case
    python bench/memory.py --list          # the cases
    python bench/memory.py gzip-bomb json-array-snapshot

Adding a case (an API page, a Postgres table...): write a function that makes the input under
``tmp`` (and starts what it needs), yields the command's arguments after ``retail-pipeline``
(without ``--warehouse``, added here), and cleans up after the yield; register it with
``@case("name", "what it is")``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Case:
    """One input and the command that reads it."""

    name: str
    about: str
    prepare: Callable[[Path], AbstractContextManager[list[str]]]


CASES: dict[str, Case] = {}


def case(
    name: str, about: str
) -> Callable[[Callable[[Path], Iterator[list[str]]]], Callable[[Path], Iterator[list[str]]]]:
    """Register a generator function ``(tmp) -> yields argv`` as the case ``name``."""

    def register(
        make: Callable[[Path], Iterator[list[str]]],
    ) -> Callable[[Path], Iterator[list[str]]]:
        CASES[name] = Case(name, about, contextmanager(make))
        return make

    return register


EVENT = {
    "event_id": "e-1",
    "event_type": "payment_captured",
    "event_version": 1,
    "event_timestamp": "2026-01-15T10:05:00Z",
    "produced_at": "2026-01-15T10:05:01Z",
    "source_system": "psp",
    "payment_id": "PAY-1",
    "order_id": "O-1",
    "amount": 41,
    "currency": "USD",
    "payment_method": "card",
    "payment_status": "CAPTURED",
}


def customer(n: int) -> bytes:
    """One valid customers record."""
    return orjson.dumps(
        {
            "customer_id": f"C-{n}",
            "name": f"Customer {n}",
            "email": f"c{n}@example.com",
            "country": "DE",
            "created_at": "2025-01-01T00:00:00Z",
        }
    )


def write_repeated(path: Path, unit: bytes, size: int, chunk: int = 16 * MiB) -> None:
    """``unit`` repeated to ``size`` bytes, written without holding it whole."""
    block = unit * max(1, chunk // len(unit))
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[:left])
            left -= min(left, len(block))


def gzip_one_line(path: Path, decompressed: int) -> None:
    """A gzip member that expands to one line of ``decompressed`` bytes (a gzip bomb)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"x" * (16 * MiB)
    with path.open("wb") as out:
        left = decompressed - 1
        while left > 0:
            out.write(compressor.compress(block[: min(left, len(block))]))
            left -= min(left, len(block))
        out.write(compressor.compress(b"\n"))
        out.write(compressor.flush())


@case("gzip-bomb", "~1 MB .ndjson.gz expanding to one 1 GiB line (dead-lettered)")
def _gzip_bomb(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "bomb.ndjson.gz"
    gzip_one_line(path, GiB)
    yield ["ingest", str(path)]


@case("gzip-members", "100,000 gzip members of one event each, then a 300 MiB line member")
def _gzip_members(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "members.ndjson.gz"
    member = gzip.compress(orjson.dumps(EVENT) + b"\n", mtime=0)
    with path.open("wb") as out:
        out.write(member * 100_000)
    bomb = tmp / "bomb-member.gz"
    gzip_one_line(bomb, 300 * MiB)
    with path.open("ab") as out:
        out.write(bomb.read_bytes())
    yield ["ingest", str(path)]


@case("ndjson-huge-line", "a 200 MB NDJSON line between two events (dead-lettered)")
def _huge_line(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "line.ndjson"
    event = orjson.dumps(EVENT) + b"\n"
    with path.open("wb") as out:
        out.write(event)
        out.write(b'{"event_id": "')
    huge = tmp / "huge.part"
    write_repeated(huge, b"y", 200_000_000)
    with path.open("ab") as out, huge.open("rb") as part:
        while chunk := part.read(16 * MiB):
            out.write(chunk)
        out.write(b'"}\n' + event)
    huge.unlink()
    yield ["ingest", str(path)]


@case("ndjson-1gb", "1 GB of valid NDJSON events")
def _one_gb(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "big.ndjson"
    write_repeated(path, orjson.dumps(EVENT) + b"\n", 10**9)
    yield ["ingest", str(path)]


@case("json-array-snapshot", "a 231 MB JSON-array customers snapshot")
def _array_snapshot(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "customers.json"
    with path.open("wb") as out:
        out.write(b"[\n")
        size, n = 2, 0
        while size < 231_000_000:
            record = (b",\n" if n else b"") + customer(n)
            out.write(record)
            size += len(record)
            n += 1
        out.write(b"\n]\n")
    yield ["load-batch", "--customers", str(path)]


@case("snapshot-huge-record", "a 200 MB record inside a JSON-array snapshot (dead-lettered)")
def _snapshot_huge_record(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "customers.json"
    with path.open("wb") as out:
        out.write(b"[" + customer(1) + b', {"customer_id": "C-2", "name": "')
        block = b"z" * (16 * MiB)
        left = 200_000_000
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= min(left, len(block))
        out.write(b'"}, ' + customer(3) + b"]")
    yield ["load-batch", "--customers", str(path)]


@case("deep-array-snapshot", "a 10^6-deep JSON array as a customers snapshot")
def _deep_snapshot(tmp: Path) -> Iterator[list[str]]:
    path = tmp / "customers.json"
    path.write_bytes(b"[" * 10**6 + b"]" * 10**6)
    yield ["load-batch", "--customers", str(path)]


@case("api-page", "a 150 MB page from an HTTP API (asked again in halves, then loaded)")
def _api_page(tmp: Path) -> Iterator[list[str]]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def page(limit: int) -> Iterator[bytes]:
        yield b'{"data":['
        for i in range(limit):
            record = orjson.loads(customer(i)) | {
                "customer_id": f"C{i:05d}",
                "name": "x" * 300_000,
                "updated_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            }
            yield (b"," if i else b"") + orjson.dumps(record)
        yield b'],"next_cursor":null}'

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            limit = int(self.path.split("limit=")[1].split("&")[0])
            self.send_response(200)
            self.end_headers()  # no Content-Length: read until the connection ends
            try:
                for part in page(limit):
                    self.wfile.write(part)
            except OSError:
                pass  # the loader stopped reading at its page limit

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield ["load-batch", "--api", url, "--entity", "customers", "--lag", "0"]
    finally:
        server.shutdown()
        server.server_close()


@case("postgres-text", "192 MB of Postgres text: 60 rows of 3 MB, 3 rows of 4 MB over the cap")
def _postgres_text(tmp: Path) -> Iterator[list[str]]:
    import socket

    import psycopg

    from retail_pipeline.local.postgres import LocalPostgres

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = LocalPostgres(tmp / "postgres", port=port)
    dsn = server.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(
                "insert into customers (customer_id, name, email, country, created_at,"
                " updated_at) select 'C' || lpad(i::text, 3, '0'), repeat('x', case when"
                " i <= 60 then 3000000 else 4200000 end), 'n@example.com', 'DE',"
                " '2025-06-01T08:00:00Z', '2026-01-01T00:00:00Z'::timestamptz"
                " + i * interval '1 second' from generate_series(1, 63) as i"
            )
        yield ["load-batch", "--postgres", dsn, "--entity", "customers", "--lag", "0"]
    finally:
        server.destroy()


@dataclass
class Result:
    peak_mib: float
    code: int
    seconds: float
    last_line: str


_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print("peak-rss-kib=" + str(usage.ru_maxrss), flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""The command runs as a grandchild of this small process: Linux carries a process's peak RSS
across exec, so a command started straight from a bigger process would report that size."""


def run(argv: list[str], warehouse: Path, env: dict[str, str] | None = None) -> Result:
    """Run ``retail-pipeline argv`` in a child process; its peak RSS from ``wait4``."""
    cmd = [sys.executable, "-c", _MEASURE, "-m", "retail_pipeline.cli", *argv]
    cmd += ["--warehouse", str(warehouse)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, env={**os.environ, **(env or {})}, check=False)
    seconds = time.perf_counter() - started
    text = (done.stdout + done.stderr).decode("utf-8", "replace")
    head, _, peak = text.rpartition("peak-rss-kib=")
    lines = head.strip().splitlines()
    last = lines[-1] if lines else ""
    return Result(int(peak.split()[0]) / 1024, done.returncode, seconds, last[:110])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    if args.list:
        for item in CASES.values():
            print(f"{item.name:<24} {item.about}")
        return
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; --list shows them")
    print(f"{'case':<24} {'peak RSS':>10} {'exit':>4} {'seconds':>8}  last line")
    for name in args.cases or list(CASES):
        with (
            tempfile.TemporaryDirectory(prefix=f"bench-memory-{name}-") as tmp,
            CASES[name].prepare(Path(tmp)) as argv,
        ):
            result = run(argv, Path(tmp) / "wh.duckdb")
        flag = "" if result.peak_mib <= 1024 else "  OVER 1 GiB"
        print(
            f"{name:<24} {result.peak_mib:>6,.0f} MiB {result.code:>4} {result.seconds:>8.1f}"
            f"  {result.last_line}{flag}",
            flush=True,
        )


if __name__ == "__main__":
    main()
