"""The dashboard attacked over real HTTP: a real server process on a real DuckDB warehouse.

Every filter gets injection payloads (quotes, ``?``, ``$$``, backslashes, NUL, stacked
statements that COPY, ATTACH, read_text or read_csv, unicode), alone and after a ``?`` in
another filter (the chain that broke out of the old inlined view). Afterwards no file has
appeared, the warehouse file is byte for byte what it was (and so are its Bronze and Gold
rows), the figures are unchanged, every answer was a 2xx or a JSON 4xx, no secret leaked and
the server's stderr holds no traceback. Foreign ``Host`` names, other methods and malformed
requests are refused with JSON, and every answer carries the security headers.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import duckdb
import pytest

from retail_pipeline.dashboard import Filters, take_snapshot
from retail_pipeline.dashboard.server import SECURITY_HEADERS
from tests.dashboard.conftest import Server, Shop, serve

SECRET = "s3cr3t-dashboard-canary"
ATTRIBUTE_FILTERS = ("category", "country", "payment_method", "carrier")
DATE_FILTERS = ("date_from", "date_to")


@dataclass
class Target:
    """A dashboard on a warehouse of its own, started in a directory holding a ``.env``."""

    server: Server
    warehouse: Path
    home: Path
    loot: Path
    stderr: Path
    digest: str
    rows: dict[str, tuple[int, int]]
    figures: dict[str, Any]

    @property
    def port(self) -> int:
        return int(urlsplit(self.server.url).port or 0)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_fingerprints(warehouse: Path) -> dict[str, tuple[int, int]]:
    """Row count and an order-free hash of every Bronze and Gold table."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_schema in ('bronze', 'gold') and table_type = 'BASE TABLE'"
        ).fetchall()
        out = {}
        for schema, table in tables:
            count, total = con.execute(
                f'select count(*), coalesce(sum(hash(t)), 0) from "{schema}"."{table}" as t'
            ).fetchone()  # type: ignore[misc]
            out[f"{schema}.{table}"] = (int(count), int(total))
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def target(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("dashboard-attacked")
    home = root / "home"
    loot = root / "loot"
    home.mkdir()
    loot.mkdir()
    (home / ".env").write_text(f"SNOWFLAKE_PASSWORD={SECRET}\n")
    (home / "data.csv").write_text(f"secret\n{SECRET}\n")
    warehouse = root / "attacked.duckdb"
    shutil.copy(shop.warehouse, warehouse)
    digest, rows = file_digest(warehouse), table_fingerprints(warehouse)
    stderr = root / "dashboard.stderr"
    with serve(warehouse, refresh_seconds=3600, cwd=home, stderr=stderr) as server:
        status, _, body = request(server.url + "api/data")
        assert status == 200
        yield Target(
            server, warehouse, home, loot, stderr, digest, rows, json.loads(body)["figures"]
        )


def request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request; the status, headers and body, whatever the status."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def raw(port: int, data: bytes, timeout: float = 30) -> bytes:
    """Send bytes as they are and read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def assert_polite(status: int, headers: http.client.HTTPMessage, body: bytes, what: str) -> None:
    """A 2xx, or a 4xx whose body is a one-line JSON error; never the secret."""
    assert 200 <= status < 300 or 400 <= status < 500, (what, status, body[:200])
    assert SECRET.encode() not in body, what
    if status >= 400:
        assert headers.get_content_type() == "application/json", what
        error = json.loads(body)["error"]
        assert isinstance(error, str) and "\n" not in error, what
    for name, value in SECURITY_HEADERS:
        assert headers.get(name) == value, (what, name)


def payloads(target: Target) -> list[str]:
    loot, warehouse = target.loot, target.warehouse
    return [
        "'",
        "''",
        "?",
        "??",
        "$1",
        "$$",
        "$$'; select 1; --$$",
        "\\",
        "\\'",
        "x\\' or 1=1 --",
        "' or 1=1 --",
        "\x00",
        "a\x00b",
        "\x1b[31m",
        "a\r\nX-Injected: 1",
        "%27",
        f"x'; copy (select 42) to '{loot}/copied.csv'; --",
        f"x'); copy (select 42) to '{loot}/copied2.csv' (format csv); --",
        f"'; attach '{warehouse}' as w; delete from w.bronze.customers; --",
        f"'; attach '{loot}/new.duckdb' as n; create table n.t as select 1; --",
        # dollar-quoted strings survive the doubling of single quotes
        f"; copy (select 42) to $${loot}/dollar.csv$$; --",
        f"; attach $${warehouse}$$ as w; delete from w.bronze.customers; --",
        "; create table w as select * from read_text($$.env$$); --",
        "') union all select * from read_text('.env') --",
        "' or exists (select * from read_text('.env')) or '",
        f"' or exists (select * from read_csv('{target.home}/data.csv')) or '",
        "'; install httpfs; load httpfs; --",
        "'; set enable_external_access = true; --",
        "'; drop table fct_orders; --",
        "Ünïcødé ☃ 🛒",
        "\u202e\ufeff",
        "\uff53\uff45\uff4c\uff45\uff43\uff54",  # fullwidth "select"
        "x" * 500,
    ]


EXPLAIN_OPTIONS = (
    ("orders", "date"),
    ("product", "product"),
    ("canceled-refunded", "status"),
    ("lead-time", "segment"),
)


def attack(target: Target, params: dict[str, str], endpoint: str = "api/data") -> None:
    url = target.server.url + endpoint + "?" + urlencode(params)
    status, headers, body = request(url)
    assert_polite(status, headers, body, repr(params))


@pytest.fixture(scope="module")
def attacked(target: Target) -> list[str]:
    """Every payload in every filter, alone and after a ``?`` in another filter (how the
    inlined view was broken out of); the answers that were not 2xx or a JSON 4xx."""
    hostile = payloads(target)
    attempts: list[dict[str, str]] = [
        {name: value} for name in (*ATTRIBUTE_FILTERS, *DATE_FILTERS) for value in hostile
    ]
    attempts += [
        {first: "?", second: value}
        for first, second in itertools.permutations(ATTRIBUTE_FILTERS, 2)
        for value in hostile
    ]
    attempts += [dict.fromkeys(ATTRIBUTE_FILTERS, "?") | {"carrier": value} for value in hostile]
    failures = []
    for params in attempts:
        try:
            attack(target, params)
        except AssertionError as exc:
            failures.append(f"{params!r}: {exc}")
    # The drill-through: every payload as the question and as each of its options.
    explained: list[dict[str, str]] = [{"question": value} for value in hostile]
    explained += [
        {"question": question, option: value}
        for question, option in EXPLAIN_OPTIONS
        for value in hostile
    ]
    for params in explained:
        try:
            attack(target, params, endpoint="api/explain")
        except AssertionError as exc:
            failures.append(f"explain {params!r}: {exc}")
    return failures


def test_every_filter_resists_injection(target: Target, attacked: list[str]) -> None:
    assert attacked == []
    assert sorted(target.loot.iterdir()) == []
    assert sorted(path.name for path in target.home.iterdir()) == [".env", "data.csv"]
    status, _, body = request(target.server.url + "api/data")
    assert status == 200 and json.loads(body)["figures"] == target.figures


def test_the_drill_through_is_explain_json(target: Target) -> None:
    """``/api/explain`` answers what ``explain --json`` prints, for each question; a bad or
    unknown parameter is a one-line JSON 400."""
    from retail_pipeline.transform.explain import explain

    day = target.figures["orders_per_day"][0]["date"]
    product = target.figures["top_products"][0]["product_id"]
    for params in (
        {"question": "orders", "date": day},
        {"question": "revenue", "date": day},
        {"question": "conversion", "date": day},
        {"question": "product", "product": product},
        {"question": "canceled-refunded", "status": "canceled"},
        {"question": "lead-time", "segment": "created_to_delivered"},
    ):
        status, headers, body = request(target.server.url + "api/explain?" + urlencode(params))
        assert_polite(status, headers, body, repr(params))
        assert status == 200, body
        shown = json.loads(body)
        question = params.pop("question")
        direct = explain(
            question,
            target.warehouse,
            day=params.get("date"),
            product=params.get("product"),
            status=params.get("status"),
            segment=params.get("segment"),
            limit=200,
        ).as_json()
        assert shown == direct, question
        assert shown["adds_up"] is True
    for params, message in (
        ({"question": "orders"}, "--date is required"),
        ({"question": "orders", "date": day, "limit": "9"}, "/api/explain takes"),
        ({"question": "why"}, "the question is one of"),
    ):
        status, headers, body = request(target.server.url + "api/explain?" + urlencode(params))
        assert status == 400 and message in json.loads(body)["error"], body


def test_the_warehouse_is_unchanged(target: Target, attacked: list[str]) -> None:
    assert file_digest(target.warehouse) == target.digest
    assert table_fingerprints(target.warehouse) == target.rows


def test_a_foreign_host_is_refused(target: Target) -> None:
    port = target.port
    for host in (
        "evil.example",
        f"evil.example:{port}",
        f"127.0.0.1.evil.example:{port}",
        "127.0.0.1",
        f"127.0.0.1:{port + 1}",
        f"localhost:{port}@evil.example",
    ):
        status, headers, body = request(target.server.url + "api/data", headers={"Host": host})
        assert status == 421, host
        assert_polite(status, headers, body, host)
        assert b"meta" not in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert request(target.server.url, headers={"Host": host})[0] == 200, host
    answer = raw(port, b"GET /api/data HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and b'"error"' in answer
    twice = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n\r\n"
    assert raw(port, twice.encode()).startswith(b"HTTP/1.0 400 ")


def test_only_get_and_head_are_served(target: Target) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"):
        status, headers, body = request(target.server.url + "api/data", method=method)
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
        assert_polite(status, headers, body, method)
    status, headers, body = request(target.server.url + "api/data", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert request(target.server.url + "api/data")[2] != b""


def test_every_answer_carries_the_security_headers(target: Target) -> None:
    base = target.server.url
    for url, kind in (
        (base, "text/html"),
        (base + "dashboard.js", "text/javascript"),
        (base + "vendor/vega.min.js", "text/javascript"),
        (base + "api/data", "application/json"),
        (base + "missing.js", "application/json"),
        (base + "api/data?date_from=never", "application/json"),
    ):
        status, headers, body = request(url)
        assert_polite(status, headers, body, url)
        assert headers.get_content_type() == kind, url
        assert headers["Cache-Control"], url
    csp = dict(SECURITY_HEADERS)["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert request(base + "api/data")[1]["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GET /api/data?country=a\x00b HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /\x00 HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /api/data?country=a?b HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /api/data?country=a&country=b HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /api/data?nope=1 HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /api/data?country=%ff HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /api/data?" + b"a=1&" * 600 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n", 414),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n", 414),
        (b"GET /../pyproject.toml HTTP/1.1\r\nHost: {host}\r\n\r\n", 404),
        (b"GET /%2e%2e/pyproject.toml HTTP/1.1\r\nHost: {host}\r\n\r\n", 404),
        (b"GET /.env HTTP/1.1\r\nHost: {host}\r\n\r\n", 404),
        (b"GET /api/nothing HTTP/1.1\r\nHost: {host}\r\n\r\n", 404),
        (b"GET http://evil.example/ HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: {host}\r\nX: a\x00b\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: {host}\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: {host}\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/9.9\r\nHost: {host}\r\n\r\n", 505),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"\xff\xfe / HTTP/1.1\r\n\r\n", 405),
    ],
)
def test_malformed_requests_get_a_json_error(
    target: Target, sent: bytes, status: int | None
) -> None:
    answer = raw(target.port, sent.replace(b"{host}", f"127.0.0.1:{target.port}".encode()))
    head, _, body = answer.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    if status is None:  # the server may serve it or refuse it, politely either way
        assert code == 200 or 400 <= code < 500, head
    else:
        assert code == status, head
    if code >= 400:
        assert b"Content-Type: application/json" in head, head
        assert "error" in json.loads(body), body
    assert b"X-Content-Type-Options: nosniff" in head


def test_a_slow_client_is_disconnected(target: Target) -> None:
    """A client that never finishes its request is dropped after the socket timeout (10 s),
    not held forever; the server keeps answering others meanwhile."""
    with socket.create_connection(("127.0.0.1", target.port), timeout=60) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert request(target.server.url)[0] == 200
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 45


def test_the_snapshot_connection_cannot_touch_files_or_settings(shop: Shop, tmp_path: Path) -> None:
    """Even SQL text that reached the in-memory copy could not read, write or ATTACH."""
    snapshot = take_snapshot(shop.warehouse)
    try:
        (tmp_path / "secret.txt").write_text(SECRET)
        for statement in (
            f"copy fct_orders to '{tmp_path}/out.csv'",
            f"select * from read_text('{tmp_path}/secret.txt')",
            f"select * from read_csv('{tmp_path}/secret.txt')",
            f"attach '{shop.warehouse}' as w",
            f"attach '{tmp_path}/new.duckdb' as n",
            "install httpfs",
            "load httpfs",
            "set enable_external_access = true",
            "set lock_configuration = false",
            "reset enable_external_access",
        ):
            with snapshot.cursor() as cur, pytest.raises(duckdb.Error):
                cur.execute(statement)
        assert sorted(path.name for path in tmp_path.iterdir()) == ["secret.txt"]
        # and the figures still come out
        assert snapshot.figures(Filters())["cancel_refund"]["orders"] > 0
    finally:
        snapshot.close()


def test_nothing_went_to_stderr(target: Target, attacked: list[str]) -> None:
    """Last in the file: after every attack above, the server's stderr is empty."""
    assert target.stderr.read_text() == ""
