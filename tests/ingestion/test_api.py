"""Customers and products from the HTTP API into Bronze, against the reference server on
127.0.0.1: incremental windows, ties, exactly-once across failures, dead letters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.ingestion.api import ApiSource, parse_updated_at
from retail_pipeline.ingestion.incremental import Change, Retry, Window, load_changes, micros
from retail_pipeline.local.reference_api import ReferenceApi
from retail_pipeline.warehouse.dead_letters import dead_letter_lines
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.accounting import unaccounted_rows

TOKEN = "test-token"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def customer(i: int | str, **changes: Any) -> dict[str, Any]:
    key = i if isinstance(i, str) else f"C{i:05d}"
    record = {
        "customer_id": key,
        "name": f"Customer {key}",
        "email": f"{key.lower()}@example.com",
        "country": "DE",
        "created_at": "2025-06-01T08:00:00Z",
    }
    return record | changes


@pytest.fixture
def api() -> Iterator[ReferenceApi]:
    with ReferenceApi(token=TOKEN) as server:
        yield server


def source(api: ReferenceApi, **options: Any) -> ApiSource:
    options = {"page_size": 100, "retry": Retry(backoff=0.001), "timeout": 5.0} | options
    return ApiSource(api.url, TOKEN, **options)


def load(wh: DuckDBWarehouse, src: ApiSource, entity: str = "customers", **options: Any) -> Any:
    return load_changes(wh, src, entity, lag_seconds=0, **options)


def bronze_keys(wh: DuckDBWarehouse, entity: str = "customers") -> list[str]:
    key = "customer_id" if entity == "customers" else "product_id"
    return [row[0] for row in wh.query(f"select {key} from bronze.{entity} order by all")]


def test_loads_every_record_once_in_batches_then_only_changes(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    # 250 records share one updated_at (a bulk update) across page and batch boundaries
    for i in range(1_000):
        api.upsert("customers", customer(i), updated_at=T0 if i < 250 else None)
    first = load(warehouse, source(api), batch_size=300)
    assert (first.read, first.loaded, first.dead_lettered) == (1_000, 1_000, 0)
    assert bronze_keys(warehouse) == [f"C{i:05d}" for i in range(1_000)]
    pages = [r for r in api.requests if r.path == "/customers"]
    assert len(pages) == 10, "one request per page of 100"
    [(runs, read, loaded)] = warehouse.query(
        "select count(*), sum(rows_read), sum(rows_loaded) from bronze._loads"
    )
    assert (runs, read, loaded) == (1, 1_000, 1_000), "one run, recorded batch by batch"
    assert warehouse.query("select count(distinct _ingested_at) from bronze.customers") == [(4,)]

    again = load(warehouse, source(api))
    assert (again.read, again.loaded) == (0, 0)
    assert warehouse.counts()["customers"] == 1_000
    assert warehouse.query("select count(*) from bronze._loads") == [(1,)], "nothing added"

    api.upsert("customers", customer(7, name="Renamed"))
    api.upsert("customers", customer(999, country="FR"))
    api.upsert("customers", customer(1_000))
    third = load(warehouse, source(api))
    assert (third.read, third.loaded) == (3, 3)
    assert warehouse.query(
        "select customer_id, name, country from bronze.customers"
        " where _ingested_at = (select max(_ingested_at) from bronze.customers) order by all"
    ) == [
        ("C00007", "Renamed", "DE"),
        ("C00999", "Customer C00999", "FR"),
        ("C01000", "Customer C01000", "DE"),
    ]
    assert unaccounted_rows(warehouse) == []


def test_payload_keeps_the_record_byte_for_byte_and_money_exact(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    raw = (
        b'{"product_id":"P1","product_name":"Tea","category":"food","price":19.99,'
        b'"active":true,"extra":{"a":1}}'
    )
    api.upsert("products", raw)
    api.upsert(
        "products",
        {
            "product_id": "P2",
            "product_name": "Pot",
            "category": "home",
            "price": 1e2,
            "active": False,
        },
    )
    load(warehouse, source(api), "products")
    rows = warehouse.query(
        "select product_id, price::varchar, payload from bronze.products order by product_id"
    )
    assert [(key, price) for key, price, _ in rows] == [("P1", "19.99"), ("P2", "100.00")]
    assert b'"price":19.99' in rows[0][2].encode() and b'"extra":{"a":1}' in rows[0][2].encode()


def test_bad_records_are_dead_lettered_with_the_source_and_key(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    api.upsert("customers", customer(1))
    api.upsert("customers", customer(2, email=None))
    api.upsert("customers", customer(3, country="Germany"))
    api.upsert("customers", customer(4, created_at="2025-06-01 08:00"))
    summary = load(warehouse, source(api))
    assert (summary.read, summary.loaded, summary.dead_lettered) == (4, 1, 3)
    dead = warehouse.query(
        "select _source_kind, _source_file, _key, _offset, reason from bronze.dead_letter"
        " order by _offset"
    )
    where = f"{api.url}/customers"
    assert [(kind, file, key) for kind, file, key, _, _ in dead] == [
        ("api", where, "C00002"),
        ("api", where, "C00003"),
        ("api", where, "C00004"),
    ]
    assert [offset for *_, offset, _ in dead] == [2, 3, 4]
    reasons = [reason for *_, reason in dead]
    assert reasons[0].startswith("email") and reasons[1].startswith("country")
    assert reasons[2].startswith("created_at")
    # what load-batch prints after its summary: the source and each record's key
    assert dead_letter_lines(warehouse, summary.load_id) == [
        f"dead letter: {where} key C0000{n}: {reason}"
        for n, reason in zip((2, 3, 4), reasons, strict=True)
    ]
    assert unaccounted_rows(warehouse) == []
    assert load(warehouse, source(api)).read == 0, "a dead letter is not read again"


def test_a_record_without_a_usable_updated_at_is_dead_lettered() -> None:
    api = ApiSource("http://127.0.0.1:9", deadline=5)
    change = api._change("customers", b'{"customer_id":"C1","updated_at":"yesterday"}')
    assert (change.key, change.updated_at) == ("C1", None)
    assert change.problem and change.problem.startswith("updated_at")
    assert api._change("customers", b"[1]").problem == "not a JSON object"
    assert parse_updated_at("2026-03-01T12:00:00.5Z") == micros(T0) + 500_000
    assert parse_updated_at("2026-03-01T12:00:00Z") == micros(T0)
    assert parse_updated_at("2026-03-01T14:00:00+02:00") == micros(T0)
    assert parse_updated_at("2026-03-01T12:00:00.000001+00:00") == micros(T0) + 1
    assert parse_updated_at("2026-03-01 12:00:00") is None
    assert parse_updated_at("2026-03-01T12:00:00") is None, "no offset: which time?"
    assert parse_updated_at("2026-03-01T12:00:00.1234567Z") is None, "finer than microseconds"
    assert parse_updated_at("2026-02-30T12:00:00Z") is None
    assert parse_updated_at(1_772_366_400) is None


def test_transient_failures_are_retried_without_loss_or_repeat(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    for i in range(500):
        api.upsert("customers", customer(i))
    api.faults.fail(2, 500, skip=1)  # mid-way: after the first page
    api.faults.fail(1, 503, skip=1, retry_after=0)
    api.faults.malform(1, skip=2)
    api.faults.fail(1, 429)
    summary = load(warehouse, source(api), batch_size=150)
    assert summary.loaded == 500 and api.faults.pending == 0
    assert bronze_keys(warehouse) == [f"C{i:05d}" for i in range(500)]


def test_a_timeout_is_retried(api: ReferenceApi, warehouse: DuckDBWarehouse) -> None:
    for i in range(150):
        api.upsert("customers", customer(i))
    api.faults.delay(1, 2.0, skip=1)
    summary = load(warehouse, source(api, timeout=0.5))
    assert summary.loaded == 150
    assert bronze_keys(warehouse) == [f"C{i:05d}" for i in range(150)]


def test_a_run_that_gives_up_mid_way_resumes_where_it_stopped(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    for i in range(600):
        api.upsert("customers", customer(i), updated_at=T0 if i % 2 else None)
    api.faults.fail(50, 500, skip=3)  # pages 1-3 pass, then the API stays down
    with pytest.raises(PipelineError, match=r"gave up after 3 attempts: 500"):
        load(warehouse, source(api, retry=Retry(attempts=3, backoff=0.001)), batch_size=200)
    assert warehouse.counts()["customers"] == 200, "the first batch was committed"
    api.faults.clear()
    # meanwhile a written record and an unwritten one change
    api.upsert("customers", customer(1, name="Changed"))
    api.upsert("customers", customer(598, name="Changed too"))
    summary = load(warehouse, source(api), batch_size=200)
    # the rest of the window after the last written record; C00598's change moved it past
    # the window's end, so its superseded version is not read at all
    assert summary.read == 399
    later = load(warehouse, source(api))
    assert later.read == 2, "both changes arrive in the next window"
    assert sorted(set(bronze_keys(warehouse))) == [f"C{i:05d}" for i in range(600)]
    assert warehouse.counts()["customers"] == 601
    [(dupes,)] = warehouse.query(
        "select count(*) - count(distinct (customer_id, payload)) from bronze.customers"
    )
    assert dupes == 0
    assert unaccounted_rows(warehouse) == []


def test_a_malformed_page_that_persists_fails_in_one_line(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    for i in range(300):
        api.upsert("customers", customer(i))
    api.faults.malform(10, skip=1)
    with pytest.raises(PipelineError) as failure:
        load(warehouse, source(api, retry=Retry(attempts=2, backoff=0.001)))
    message = str(failure.value)
    assert "\n" not in message and "page 2 is malformed" in message and api.url in message
    assert warehouse.counts()["customers"] == 0, "the window's one batch was not written"


def test_wrong_token_and_bad_urls_are_one_line(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    with pytest.raises(PipelineError, match=r"401 Unauthorized \(set RETAIL_API_TOKEN"):
        load(warehouse, ApiSource(api.url, "wrong"))
    with pytest.raises(InputError, match="expected an http"):
        ApiSource("ftp://example.com")
    with pytest.raises(InputError, match="no credentials in the URL"):
        ApiSource("http://user:secret@example.com")
    with pytest.raises(PipelineError, match="cannot connect"):
        load(warehouse, ApiSource("http://127.0.0.1:9", retry=Retry(attempts=2, backoff=0.001)))


class _Scrambled:
    """A source that breaks the order the API promises."""

    kind = "api"

    def describe(self, entity: str) -> str:
        return "http://scrambled/customers"

    def clock(self) -> int:
        return micros(T0 + timedelta(days=1))

    def close(self) -> None:
        pass

    def has_changes_since(self, entity: str, moment: int) -> bool:
        return False

    def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
        def change(key: str, minutes: int) -> Change:
            at = micros(T0 + timedelta(minutes=minutes))
            return Change(key, at, b'{"customer_id":"%s"}' % key.encode())

        yield [change("C2", 1), change("C1", 2)]
        yield [change("C3", 3), change("C0", 1)]


def test_records_out_of_order_are_refused_before_their_page_is_written(
    warehouse: DuckDBWarehouse,
) -> None:
    with pytest.raises(InputError, match=r"'C0' .* is not after 'C3'.*nothing of this page"):
        load_changes(warehouse, _Scrambled(), "customers", lag_seconds=0, batch_size=2)
    assert warehouse.counts()["customers"] == 0
    assert warehouse.query("select count(*) from bronze.dead_letter") == [(2,)]


class _Unbounded(ApiSource):
    """A client of an API that has no updated_since / updated_before: every page from the
    first record on."""

    def _page(self, entity: str, query: dict[str, str], number: int) -> Any:
        query = {k: v for k, v in query.items() if k not in ("updated_since", "updated_before")}
        return super()._page(entity, query, number)


def test_an_api_that_ignores_the_bounds_still_loads_each_change_once(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    for i in range(250):
        api.upsert("customers", customer(i), updated_at=T0 + timedelta(seconds=i))
    unbounded = _Unbounded(api.url, TOKEN, page_size=40)
    first = load_changes(warehouse, unbounded, "customers", lag_seconds=0)
    assert first.read == 250
    # changes: one stamped after a run's window end is left for the next run
    api.upsert("customers", customer(3, name="Changed"))
    stamp_after = datetime.now(UTC) + timedelta(hours=1)
    api.upsert("customers", customer(4, name="Future"), updated_at=stamp_after)
    second = load_changes(warehouse, unbounded, "customers", lag_seconds=0)
    assert second.read == 1 and second.waiting is False
    assert warehouse.counts()["customers"] == 251
    assert sorted(set(bronze_keys(warehouse))) == [f"C{i:05d}" for i in range(250)]


def test_lag_keeps_fresh_changes_for_the_next_window(
    api: ReferenceApi, warehouse: DuckDBWarehouse
) -> None:
    api.upsert("customers", customer(1), updated_at=datetime.now(UTC) - timedelta(minutes=5))
    api.upsert("customers", customer(2))  # now: inside the lag
    first = load_changes(warehouse, source(api), "customers", lag_seconds=60)
    assert (first.read, bronze_keys(warehouse)) == (1, ["C00001"])
    assert not first.waiting, "the summary only says so when nothing was read"
    second = load_changes(warehouse, source(api), "customers", lag_seconds=60)
    assert (second.read, second.waiting) == (0, True)
    assert "newer changes wait for the next run" in second.line()
    assert load(warehouse, source(api)).read == 1
    assert bronze_keys(warehouse) == ["C00001", "C00002"]


def test_cli_loads_from_the_api(
    api: ReferenceApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from retail_pipeline.cli import app

    for i in range(3):
        api.upsert("customers", customer(i))
    api.upsert(
        "products",
        {
            "product_id": "P1",
            "product_name": "Tea",
            "category": "food",
            "price": 4.5,
            "active": True,
        },
    )
    monkeypatch.setenv("RETAIL_API_TOKEN", TOKEN)
    monkeypatch.setenv("RETAIL_BATCH_LAG", "0")
    wh = str(tmp_path / "wh.duckdb")
    runner = CliRunner()
    result = runner.invoke(app, ["load-batch", "--api", api.url, "--warehouse", wh])
    assert result.exit_code == 0, result.output
    assert "customers: read 3 / loaded 3" in result.output
    assert "products: read 1 / loaded 1" in result.output
    # with no option: the sources the settings name
    monkeypatch.setenv("RETAIL_API_URL", api.url)
    api.upsert("customers", customer(9))
    result = runner.invoke(app, ["load-batch", "--warehouse", wh, "--entity", "customers"])
    assert result.exit_code == 0, result.output
    assert "customers: read 1 / loaded 1" in result.output and "products" not in result.output
    monkeypatch.delenv("RETAIL_API_URL")
    result = runner.invoke(app, ["load-batch", "--warehouse", wh])
    assert result.exit_code != 0 and "nothing to load" in str(result.exception)


class _Hostile(BaseHTTPRequestHandler):
    """Answers every GET with what the test put in ``answers`` (status, headers, body)."""

    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        status, headers, body = type(self).answers[
            min(len(type(self).seen), len(type(self).answers)) - 1
        ]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[type[_Hostile]]:
    handler = type("Handler", (_Hostile,), {"answers": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def test_a_redirect_is_refused_and_the_token_stays_home(
    hostile: Any, warehouse: DuckDBWarehouse
) -> None:
    hostile.answers = [(302, {"Location": "http://127.0.0.1:9/elsewhere"}, b"")]
    with pytest.raises(PipelineError, match=r"302 .*redirected to http://127.0.0.1:9/elsewhere"):
        load(warehouse, ApiSource(hostile.url, TOKEN, retry=Retry(attempts=1)))
    assert len(hostile.seen) == 1, "the redirect was not followed"


def test_a_cursor_that_comes_back_is_refused(hostile: Any, warehouse: DuckDBWarehouse) -> None:
    page = (
        b'{"data":[{"customer_id":"C1","updated_at":"2020-01-01T00:00:00Z"}],"next_cursor":"again"}'
    )
    empty = b'{"data":[],"next_cursor":null}'
    hostile.answers = [(200, {}, empty), (200, {}, empty), (200, {}, page)]
    api = ApiSource(hostile.url, retry=Retry(attempts=1))
    assert load(warehouse, api).read == 0  # the window now starts after 2020
    with pytest.raises(InputError, match="a cursor seen before"):
        load(warehouse, api)  # an API that ignores the bounds, its cursor going round
    assert len(hostile.seen) == 4


def test_retry_after_is_honoured_within_bounds_and_odd_values_do_not_crash(
    hostile: Any, warehouse: DuckDBWarehouse
) -> None:
    waits: list[float] = []
    retry = Retry(attempts=4, backoff=0.001, max_backoff=2.0, sleep=waits.append)
    hostile.answers = [
        (503, {"Retry-After": "86400"}, b"{}"),
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}, b"{}"),
        (429, {"Retry-After": "\u00b2"}, b"{}"),
        (200, {}, b'{"data":[],"next_cursor":null}'),
    ]
    assert load(warehouse, ApiSource(hostile.url, retry=retry)).read == 0
    assert waits[0] == 2.0, "a day is capped at max_backoff"
    assert waits[1] == 0.0, "a date in the past: at once"
    assert 0 < waits[2] <= 2.0


def test_a_page_nested_too_deeply_is_one_line(hostile: Any, warehouse: DuckDBWarehouse) -> None:
    hostile.answers = [(200, {}, b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}")]
    with pytest.raises(PipelineError, match="page 1 is malformed") as failure:
        load(warehouse, ApiSource(hostile.url, retry=Retry(attempts=1)))
    assert "\n" not in str(failure.value)


def test_the_lag_is_bounded(api: ReferenceApi, warehouse: DuckDBWarehouse) -> None:
    for lag in (float("inf"), 1e12, -1.0):
        with pytest.raises(InputError, match="lag"):
            load_changes(warehouse, source(api), "customers", lag_seconds=lag)


def test_a_record_with_a_repeated_key_is_dead_lettered_and_the_window_goes_on(
    hostile: Any, warehouse: DuckDBWarehouse
) -> None:
    def record(key: str, *stamps: str) -> bytes:
        fields = [f'"customer_id":"{key}","name":"N","email":"e@example.com","country":"DE"']
        fields += ['"created_at":"2025-06-01T08:00:00Z"']
        fields += [f'"updated_at":"{stamp}"' for stamp in stamps]
        return ("{" + ",".join(fields) + "}").encode()

    rows = [
        record("C1", "2026-01-01T00:00:00Z"),
        record("C2", "2026-01-01T00:00:01Z", "2099-01-01T00:00:00Z"),  # which one orders it?
        record("C3", "2026-01-01T00:00:02Z"),
    ]
    hostile.answers = [(200, {}, b'{"data":[' + b",".join(rows) + b'],"next_cursor":null}')]
    summary = load(warehouse, ApiSource(hostile.url))
    assert (summary.read, summary.loaded, summary.dead_lettered) == (3, 2, 1)
    assert bronze_keys(warehouse) == ["C1", "C3"]
    [(reason,)] = warehouse.query("select reason from bronze.dead_letter")
    assert "repeated key 'updated_at'" in reason


def test_a_bad_entity_is_refused_before_anything_is_loaded(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from retail_pipeline.cli import app

    snapshot = tmp_path / "customers.json"
    snapshot.write_text(json.dumps([customer(1)]))
    wh = tmp_path / "wh.duckdb"
    result = CliRunner().invoke(
        app, ["load-batch", "--customers", str(snapshot), "--entity", "bogus", "-w", str(wh)]
    )
    assert result.exit_code == 1 and "--entity bogus" in str(result.exception)
    assert not wh.exists(), "nothing was loaded"
