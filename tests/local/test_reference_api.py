"""The reference customers/products HTTP API: keyset pagination, time windows, auth, upserts,
exact money text, fault injection and the ``api-server`` command, over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil
import pytest

from retail_pipeline.errors import InputError
from retail_pipeline.local.reference_api import (
    ReferenceApi,
    ServedRequest,
    decode_cursor,
    encode_cursor,
    format_timestamp,
    parse_timestamp,
)
from tests.cli.run import COMMAND

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
TOKEN = "s3cret-token"
API_TOKEN: Any = object()
"""``request``'s default: the API's own token, if it has one."""


def _customer(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "customer_id": f"cus_{n:03d}",
        "name": f"Customer {n}",
        "email": f"c{n}@example.com",
        "country": "US",
        "created_at": "2025-12-01T00:00:00.000Z",
        **fields,
    }


def request(
    api: ReferenceApi,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    token: str | None = API_TOKEN,
    timeout: float = 5,
    **params: str | int,
) -> tuple[int, bytes, Any]:
    """(status, body, headers) of one request, errors included; with the API's token unless
    ``token`` says otherwise (None: no Authorization header)."""
    if token is API_TOKEN:
        token = api.token
    url = api.url + path + ("?" + urlencode(params) if params else "")
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers


def page(api: ReferenceApi, entity: str = "customers", **params: str | int) -> dict[str, Any]:
    status, body, _ = request(api, f"/{entity}", **params)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def read_all(api: ReferenceApi, entity: str = "customers", **params: str | int) -> list[str]:
    """Every key of a paginated read, following next_cursor."""
    keys: list[str] = []
    cursor: str | None = None
    while True:
        got = page(api, entity, **params, **({"cursor": cursor} if cursor else {}))
        keys += [record["customer_id"] for record in got["data"]]
        cursor = got["next_cursor"]
        if cursor is None:
            return keys


@pytest.fixture
def api() -> Iterator[ReferenceApi]:
    with ReferenceApi(token=TOKEN) as server:
        yield server


def test_timestamps_and_cursors_round_trip() -> None:
    assert (
        format_timestamp(parse_timestamp("2026-01-15T10:00:00Z")) == "2026-01-15T10:00:00.000000Z"
    )
    assert parse_timestamp("2026-01-15T10:00:00.1Z") == parse_timestamp(
        "2026-01-15T10:00:00.100000Z"
    )
    assert parse_timestamp("1969-12-31T23:59:59.999999Z") == -1
    assert decode_cursor(encode_cursor(123, "cus_é/1")) == (123, "cus_é/1")
    for bad in ("2026-01-15T10:00:00", "2026-01-15T10:00:00+00:00", "2026-02-30T10:00:00Z"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_pagination_covers_every_record_once_in_order_with_ties_across_pages(
    api: ReferenceApi,
) -> None:
    # stamps: 1 record at T0, 5 tied at T0+1s (inserted out of key order), 2 at T0+2s
    stamps = {1: 0, 6: 1, 3: 1, 5: 1, 2: 1, 4: 1, 8: 2, 7: 2}
    for n, seconds in stamps.items():
        api.upsert("customers", _customer(n), updated_at=T0 + timedelta(seconds=seconds))
    expected = [f"cus_{n:03d}" for n in range(1, 9)]
    assert [r["customer_id"] for r in api.records("customers")] == expected

    first = page(api, limit=3)
    assert [r["customer_id"] for r in first["data"]] == expected[:3]
    assert first["data"][1]["updated_at"] == "2026-01-15T10:00:01.000000Z"
    assert decode_cursor(first["next_cursor"]) == (
        parse_timestamp("2026-01-15T10:00:01Z"),
        "cus_003",
    )
    for limit in (1, 2, 3, 4, 7, 8, 1000):
        assert read_all(api, limit=limit) == expected
    assert page(api, limit=8)["next_cursor"] is None  # exactly the last record: no next page
    assert page(api, limit=4, cursor=page(api, limit=4)["next_cursor"])["next_cursor"] is None

    requests_before = len(api.requests)
    assert read_all(api, limit=3) == expected
    pages = [r for r in api.requests[requests_before:] if r.path == "/customers"]
    assert [("cursor" in r.parameters) for r in pages] == [False, True, True]
    assert {r.parameters for r in pages} >= {frozenset({"limit"}), frozenset({"limit", "cursor"})}

    assert page(api, "products") == {"data": [], "next_cursor": None}


def test_default_page_size_and_limit_maximum() -> None:
    with ReferenceApi(page_limit_max=4) as api:
        for n in range(6):
            api.upsert("customers", _customer(n))
        assert len(page(api)["data"]) == 4
        assert request(api, "/customers", limit=5)[0] == 400
        assert read_all(api, limit=4) == [f"cus_{n:03d}" for n in range(6)]


def test_updated_since_is_inclusive_and_updated_before_exclusive(api: ReferenceApi) -> None:
    for n in range(1, 7):  # cus_001 at T0+1ms ... cus_006 at T0+6ms
        api.upsert("customers", _customer(n), updated_at=T0 + timedelta(milliseconds=n))
    since, before = "2026-01-15T10:00:00.002Z", "2026-01-15T10:00:00.005000Z"
    assert read_all(api, updated_since=since) == [
        "cus_002",
        "cus_003",
        "cus_004",
        "cus_005",
        "cus_006",
    ]
    assert read_all(api, updated_before=before) == ["cus_001", "cus_002", "cus_003", "cus_004"]
    window = {"updated_since": since, "updated_before": before}
    assert read_all(api, **window) == ["cus_002", "cus_003", "cus_004"]
    assert read_all(api, limit=1, **window) == ["cus_002", "cus_003", "cus_004"]
    # the page ending at the window's last record has no next page
    assert page(api, limit=3, **window)["next_cursor"] is None
    assert page(api, limit=2, **window)["next_cursor"] is not None
    assert read_all(api, updated_since="2026-01-15T10:00:00Z", updated_before=since) == ["cus_001"]
    assert read_all(api, updated_since="2026-01-15T10:00:01Z") == []
    assert read_all(api, updated_since=before, updated_before=since) == []


def test_a_record_updated_mid_pagination_neither_skips_nor_repeats_others(
    api: ReferenceApi,
) -> None:
    for n in range(1, 10):
        api.upsert("customers", _customer(n))
    first = page(api, limit=3)
    seen = [r["customer_id"] for r in first["data"]]
    api.upsert("customers", _customer(5, name="Renamed"))  # not read yet: moves to the end
    api.upsert("customers", _customer(2, name="Renamed"))  # already read: comes again, last
    cursor = first["next_cursor"]
    tail: list[dict[str, Any]] = []
    while cursor is not None:
        got = page(api, limit=3, cursor=cursor)
        tail += got["data"]
        cursor = got["next_cursor"]
    seen += [r["customer_id"] for r in tail]
    assert seen == [f"cus_{n:03d}" for n in (1, 2, 3, 4, 6, 7, 8, 9, 5, 2)]
    assert [r["name"] for r in tail[-2:]] == ["Renamed", "Renamed"]


def test_bearer_token_is_required_except_for_health() -> None:
    with ReferenceApi(token=TOKEN) as api:
        api.upsert("customers", _customer(1))
        for token in (None, "wrong", TOKEN + "x", ""):
            status, body, headers = request(api, "/customers", token=token)
            assert status == 401, token
            assert "error" in json.loads(body)
            assert headers["WWW-Authenticate"] == "Bearer"
        status, body, _ = request(api, "/customers", token=TOKEN)
        assert status == 200
        assert [r["customer_id"] for r in json.loads(body)["data"]] == ["cus_001"]
        assert request(api, "/health")[:2] == (200, b'{"status":"ok"}')

        record = json.dumps(_customer(2)).encode()
        assert request(api, "/customers/cus_002", method="PUT", body=record, token=None)[0] == 401
        assert request(api, "/customers/cus_002", method="PUT", body=record, token="no")[0] == 401
        assert len(api.records("customers")) == 1
        assert request(api, "/customers/cus_002", method="PUT", body=record, token=TOKEN)[0] == 200
        assert len(api.records("customers")) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": ""},
        {"limit": "2.5"},
        {"updated_since": "2026-01-15T10:00:00"},
        {"updated_since": "2026-01-15T10:00:00+00:00"},
        {"updated_since": "2026-01-15 10:00:00Z"},
        {"updated_since": "2026-01-15T10:00:00.1234567Z"},
        {"updated_before": "2026-13-01T00:00:00Z"},
        {"updated_before": "yesterday"},
        {"cursor": "not-a-cursor"},
        {"cursor": ""},
        {"cursor": base64.urlsafe_b64encode(b'["2026-01-15T10:00:00Z", 5]').decode()},
        {"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()},
        {"updated_sinse": "2026-01-15T10:00:00Z"},
    ],
)
def test_bad_parameters_are_400_with_an_error(api: ReferenceApi, params: dict[str, str]) -> None:
    status, body, _ = request(api, "/customers", **params)
    assert status == 400
    assert set(json.loads(body)) == {"error"}


def test_repeated_parameter_is_400_and_unknown_resources_404(api: ReferenceApi) -> None:
    assert request(api, "/customers?limit=1&limit=2")[0] == 400
    for path in ("/orders", "/customers/cus_001", "/", "/customers/"):
        status, body, _ = request(api, path)
        assert status == 404, path
        assert "error" in json.loads(body)
    assert request(api, "/orders/x", method="PUT", body=b"{}")[0] == 404
    assert request(api, "/customers", method="POST", body=b"{}")[0] == 405


def test_put_upserts_and_stamps_strictly_increasing_updated_at(api: ReferenceApi) -> None:
    stamps = []
    for name in ("First", "Second", "Third"):
        body = json.dumps({"customer_id": "ignored", "name": name, "updated_at": "x"}).encode()
        status, served, _ = request(api, "/customers/cus%2F1", method="PUT", body=body)
        assert status == 200
        record = json.loads(served)
        assert record["customer_id"] == "cus/1"  # the key comes from the URL
        assert record["name"] == name
        stamps.append(parse_timestamp(record["updated_at"]))
    stamps += [parse_timestamp(api.upsert("customers", _customer(n))) for n in range(50)]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert abs(stamps[0] / 1e6 - time.time()) < 60
    assert api.records("customers")[0]["name"] == "Third"
    assert len(api.records("customers")) == 51

    for bad in (b"{not json", b"[1, 2]", b'"text"', b"", b'{"name": "\xff"}'):
        status, body, _ = request(api, "/customers/cus_x", method="PUT", body=bad)
        assert status == 400, bad
        assert "error" in json.loads(body)
    assert len(api.records("customers")) == 51


def test_money_and_invalid_records_are_served_exactly_as_given(api: ReferenceApi) -> None:
    prices = ["19.99", "1E+2", "0.10", "12345678901234567890.123456789", "-0.0", '"abc"', "null"]
    for n, price in enumerate(prices):
        body = f'{{"product_name": "P{n}", "category": "C", "price": {price}, "active": true}}'
        assert request(api, f"/products/prd_{n}", method="PUT", body=body.encode())[0] == 200
    api.upsert("products", {"product_id": "prd_dec", "price": Decimal("2.50"), "active": 1})
    api.upsert("customers", _customer(1, email=None, country="Narnia", extra={"a": [1, 2]}))
    api.upsert("customers", b'{"customer_id": "cus_raw", "email": 0.10, "created_at": "soon"}')

    api.upsert("customers", b'{"customer_id":"cus_dup","name":"x" , "name":"y","updated_at":1}')
    raw = request(api, "/products")[1]
    for price in [*prices, "2.50"]:
        assert f'"price":{price},'.encode() in raw, price
    served = page(api)["data"]
    assert served[0]["email"] is None and served[0]["extra"] == {"a": [1, 2]}
    assert served[1]["created_at"] == "soon"
    customers = request(api, "/customers")[1]
    assert b'"email":0.10,' in customers
    assert b'{"customer_id":"cus_dup","name":"x","name":"y","updated_at":"' in customers
    assert api.records("products")[1]["price"] == Decimal("1E+2")


def test_upsert_with_an_explicit_updated_at_keeps_later_stamps_increasing(
    api: ReferenceApi,
) -> None:
    future = datetime(2100, 1, 1, tzinfo=UTC)
    assert api.upsert("customers", _customer(1), updated_at=future) == "2100-01-01T00:00:00.000000Z"
    assert api.upsert("customers", _customer(2)) == "2100-01-01T00:00:00.000001Z"
    with pytest.raises(ValueError, match="timezone"):
        api.upsert("customers", _customer(3), updated_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="customer_id"):
        api.upsert("customers", {"name": "no key"})
    with pytest.raises(ValueError, match="unknown entity"):
        api.upsert("orders", _customer(4))


def test_fail_fault_answers_the_status_then_recovers(api: ReferenceApi) -> None:
    api.upsert("customers", _customer(1))
    api.faults.fail(2, status=503, retry_after=1.5)
    assert request(api, "/health")[0] == 200  # health is never faulted
    for _ in range(2):
        status, body, headers = request(api, "/customers")
        assert status == 503
        assert "error" in json.loads(body)
        assert headers["Retry-After"] == "1.5"
    assert request(api, "/customers")[0] == 200
    assert api.faults.pending == 0
    api.faults.fail(1)
    assert request(api, "/products")[0] == 500
    with pytest.raises(ValueError):
        api.faults.fail(1, status=200)


def test_delay_fault_outlasts_a_client_timeout(api: ReferenceApi) -> None:
    api.upsert("customers", _customer(1))
    api.faults.delay(1, 3.0)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        request(api, "/customers", timeout=0.3)
    assert request(api, "/customers", timeout=5)[0] == 200  # stop() does not wait for the sleeper


def test_malform_fault_cuts_the_body(api: ReferenceApi) -> None:
    for n in range(3):
        api.upsert("customers", _customer(n))
    api.faults.malform(1)
    status, body, _ = request(api, "/customers")
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert body == request(api, "/customers")[1][: len(body)]


def test_skip_lands_a_fault_mid_way_through_a_paginated_read(api: ReferenceApi) -> None:
    for n in range(10):
        api.upsert("customers", _customer(n))
    api.faults.fail(1, status=502, skip=2)
    api.faults.malform(1, skip=3)
    first = page(api, limit=3)
    second = page(api, limit=3, cursor=first["next_cursor"])
    assert request(api, "/customers", limit=3, cursor=second["next_cursor"])[0] == 502
    status, body, _ = request(api, "/customers", limit=3, cursor=second["next_cursor"])
    assert status == 200 and not body.endswith(b"}")
    third = page(api, limit=3, cursor=second["next_cursor"])  # the retry succeeds
    fourth = page(api, limit=3, cursor=third["next_cursor"])
    keys = [r["customer_id"] for p in (first, second, third, fourth) for r in p["data"]]
    assert keys == [f"cus_{n:03d}" for n in range(10)]
    assert fourth["next_cursor"] is None
    assert len([r for r in api.requests if r.path == "/customers"]) == 6


def test_load_snapshot_reads_arrays_and_ndjson(api: ReferenceApi, tmp_path: Path) -> None:
    array = tmp_path / "products.json"
    array.write_text(
        '[{"product_id": "prd_1", "price": 0.10}, {"product_id": "prd_2", "price": 1E+2}]'
    )
    ndjson = tmp_path / "customers.ndjson"
    ndjson.write_text('{"customer_id": "cus_1", "email": null}\n\n{"customer_id": "cus_2"}\n')
    assert api.load_snapshot("products", array) == 2
    assert api.load_snapshot("customers", ndjson) == 2
    assert b'"price":0.10,' in request(api, "/products")[1]
    assert [r["customer_id"] for r in api.records("customers")] == ["cus_1", "cus_2"]

    keyless = tmp_path / "keyless.ndjson"
    keyless.write_text('{"customer_id": "cus_3"}\n{"name": "no key"}\n')
    with pytest.raises(InputError, match=r"keyless\.ndjson:2: no customer_id"):
        api.load_snapshot("customers", keyless)
    with pytest.raises(InputError, match=r"missing\.json"):
        api.load_snapshot("customers", tmp_path / "missing.json")
    assert len(api.records("customers")) == 2  # nothing of a bad file is stored


def test_stop_ends_serving() -> None:
    api = ReferenceApi().start()
    url = api.url
    api.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=2)


def _start_cli(*args: str, cwd: Path, **env: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``api-server --port 0``: the process, its URL and the line saying what it serves."""
    proc = subprocess.Popen(
        [*COMMAND, "api-server", "--port", "0", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line, serving = proc.stdout.readline(), proc.stdout.readline()  # nothing more until Ctrl-C
    if not line.startswith("api: "):
        proc.kill()
        pytest.fail(f"no URL line: {line!r} {proc.communicate()}")
    return proc, line.split()[1], serving


def _stop_cli(proc: subprocess.Popen[str]) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_cli_serves_the_simulators_reference_data(tmp_path: Path) -> None:
    proc, url, serving = _start_cli(cwd=tmp_path, RETAIL_API_TOKEN="")
    try:
        assert _get(url + "/health") == (200, {"status": "ok"})
        status, body = _get(url + "/products?limit=1000")
        assert status == 200 and body["next_cursor"] is None
        assert len(body["data"]) == 240
        assert all(set(r) >= {"product_id", "price", "updated_at"} for r in body["data"])
    finally:
        out = _stop_cli(proc)
    assert "customers and 240 products from the simulator" in serving
    assert serving.endswith("; reads open, writes refused (set RETAIL_API_TOKEN to allow them)\n")
    assert out.splitlines() == ["api-server stopped"]


def test_cli_serves_files_with_the_token_from_the_environment(tmp_path: Path) -> None:
    customers = tmp_path / "customers.json"
    customers.write_text(json.dumps([_customer(1), _customer(2)]))
    proc, url, serving = _start_cli(
        "--customers", str(customers), cwd=tmp_path, RETAIL_API_TOKEN=TOKEN
    )
    try:
        assert _get(url + "/customers")[0] == 401
        assert _get(url + "/customers", TOKEN)[0] == 200
        body = _get(url + "/customers", TOKEN)[1]
        assert [r["customer_id"] for r in body["data"]] == ["cus_001", "cus_002"]
        assert _get(url + "/products", TOKEN)[1] == {"data": [], "next_cursor": None}
    finally:
        assert _stop_cli(proc) == "api-server stopped\n"
    assert (
        serving
        == f"serving 2 customers from {customers}; bearer token required (RETAIL_API_TOKEN)\n"
    )


def test_cli_bad_file_or_busy_port_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "products.json"
    bad.write_text("[{not json")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args, needle in (
            (["--products", str(bad), "--port", "0"], "products.json"),
            (["--customers", str(tmp_path / "nope.json"), "--port", "0"], "nope.json"),
            (["--port", port], f"127.0.0.1:{port}"),
            (["--host", "0.0.0.0", "--port", "0"], "requires RETAIL_API_TOKEN to be set"),
        ):
            result = subprocess.run(
                [*COMMAND, "api-server", *args],
                env={**os.environ, "RETAIL_API_TOKEN": ""},
                cwd=tmp_path,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
            assert result.returncode == 1, result
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert needle in lines[0]


# --- safe by default: writes need a token, a bounded log, hostile input ---------------------------


def raw_request(api: ReferenceApi, data: bytes, timeout: float = 10) -> tuple[int, dict[str, Any]]:
    """Send ``data`` as it is; the status and the JSON body of the answer."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer before it has read it all
            sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"Content-Type: application/json" in head, head
    result: dict[str, Any] = json.loads(body)
    return status, result


def test_writes_need_a_token_even_when_none_is_set() -> None:
    with ReferenceApi() as api:  # no token: reads open, writes refused
        api.upsert("customers", _customer(1))
        record = json.dumps(_customer(2)).encode()
        for token in (None, "anything"):
            status, body, _ = request(
                api, "/customers/cus_002", method="PUT", body=record, token=token
            )
            assert status == 403
            assert "RETAIL_API_TOKEN" in json.loads(body)["error"]
        assert [r["customer_id"] for r in api.records("customers")] == ["cus_001"]
        assert request(api, "/customers")[0] == 200


def test_the_request_log_is_bounded_and_keeps_no_query_values() -> None:
    with ReferenceApi(token=TOKEN, request_log=50) as api:
        for n in range(120):
            request(
                api,
                "/customers",
                cursor=f"SECRET-{n}",
                limit=1,
                **{f"p{i}": "v" for i in range(20)},
            )
        request(api, "/" + "x" * 5000, token=None)
        log = api.requests
        assert len(log) == 50
        assert log[-1] == ServedRequest("GET", "/" + "x" * 199, frozenset())
        assert all(len(r.parameters) <= 8 for r in log)
        assert "SECRET" not in repr(log) and TOKEN not in repr(log)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /customers?" + b"a" * 9000 + b" HTTP/1.0\r\n\r\n", 414),
        (b"GET /customers HTTP/1.0\r\n" + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
        (b"GET /customers HTTP/1.0\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n", 431),
        (
            b"PUT /customers/c1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            411,
        ),
        (b"PUT /customers/c1 HTTP/1.0\r\nContent-Length: 2000000\r\n\r\n{}", 413),
        (b"PUT /customers/c1 HTTP/1.0\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 411),
        (b"PUT /customers/c1 HTTP/1.0\r\nContent-Length: -1\r\n\r\n{}", 411),
        (b"PUT /customers/c1 HTTP/1.0\r\n\r\n", 411),
        (b"GET /cus\x00tomers HTTP/1.0\r\n\r\n", 404),
        (b"GET //[x HTTP/1.0\r\n\r\n", 404),
        (b"GET http://[x/customers HTTP/1.0\r\n\r\n", 400),
        (b"BREW /customers HTTP/1.0\r\n\r\n", 405),
        (b"GET /customers HTTP/9.9\r\n\r\n", 505),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", 400),
        (
            b"GET /customers?limit=%ff%fe HTTP/1.0\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\n\r\n",
            400,
        ),
        (b"GET /customers HTTP/1.0\r\nAuthorization: Bearer \xff\xfe\r\n\r\n", 401),
    ],
    ids=lambda value: value[:24].decode("latin-1") if isinstance(value, bytes) else str(value),
)
def test_hostile_requests_get_a_json_4xx_and_no_traceback(
    capfd: pytest.CaptureFixture[str], data: bytes, status: int
) -> None:
    with ReferenceApi(token=TOKEN) as api:
        got, body = raw_request(api, data)
        assert (got, set(body)) == (status, {"error"})
        assert request(api, "/health")[0] == 200  # still serving
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and captured.err == ""


def test_a_slow_client_is_cut_off_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from retail_pipeline.local import reference_api as api_server

    monkeypatch.setattr(api_server, "REQUEST_DEADLINE", 1.0)
    with ReferenceApi(token=TOKEN) as api:
        host, port = api.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /customers HTTP/1.0\r\n")
            closed = False
            while time.monotonic() - started < 10:  # one byte every 0.2 s, never done
                try:
                    sock.sendall(b"X")
                    sock.settimeout(0.2)
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                if closed:
                    break
            assert closed, "the server still waits for the slow client"
            assert time.monotonic() - started < 8  # the deadline (1 s), with a generous margin
        assert request(api, "/health")[0] == 200


def test_connections_at_once_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from retail_pipeline.local import reference_api as api_server

    monkeypatch.setattr(api_server, "MAX_CONNECTIONS", 3)
    with ReferenceApi(token=TOKEN) as api:
        host, port = api.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
        try:
            deadline = time.monotonic() + 10
            while True:  # the three are accepted (each holds a slot) in the server's time
                status, body = raw_request(api, b"GET /health HTTP/1.0\r\n\r\n")
                if status == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert (status, body) == (503, {"error": "too many connections: try again soon"})
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 10
        while raw_request(api, b"GET /health HTTP/1.0\r\n\r\n")[0] != 200:
            assert time.monotonic() < deadline, "the slots were not given back"
            time.sleep(0.05)


_SERVER = """
import sys
from retail_pipeline.local.reference_api import ReferenceApi
api = ReferenceApi().start()
print(api.url, flush=True)
sys.stdin.read()  # until the test closes stdin
print(len(api.requests), flush=True)
"""


@pytest.mark.slow
def test_memory_stays_bounded_over_thousands_of_requests() -> None:
    """6,500 requests, each with 900 query parameters (under the request line's cap): the
    server's RSS grows by a bounded amount (before the fix, each request's parameters were kept:
    +160 MiB per 2,000 requests)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        url = proc.stdout.readline().strip()
        host, port = url.removeprefix("http://").split(":")
        query = "&".join(f"k{i}=v" for i in range(900)).encode()
        data = b"GET /customers?" + query + b" HTTP/1.0\r\n\r\n"
        assert len(data) < 8 << 10

        def send(n: int) -> None:
            for _ in range(n):
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(data)
                    while sock.recv(65536):
                        pass

        server = psutil.Process(proc.pid)
        send(500)  # warm up: threads, allocator arenas
        before = server.memory_info().rss
        send(6_000)
        grown = server.memory_info().rss - before
        print(f"server RSS grew by {grown / 2**20:.1f} MiB over 6,000 requests")
        assert grown < 40 * 2**20
    finally:
        out, _ = proc.communicate("", timeout=30)
    assert int(out.strip()) == 6_500  # all logged (the default log holds 10,000)
