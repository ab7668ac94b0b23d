"""Property tests: malformed input never crashes the loader and never costs a valid event."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.events.reference import reference_reason
from tests.messages import BASES, mutated_events


@st.composite
def valid_events(draw: st.DrawFn) -> bytes:
    event = dict(draw(st.sampled_from(BASES)))
    event["event_id"] = draw(st.text(min_size=1, max_size=10))
    event["source_system"] = draw(st.text(min_size=1, max_size=5))
    return orjson.dumps(event)


garbage = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b""))
lines_strategy = st.lists(
    st.one_of(valid_events(), mutated_events(), garbage), min_size=1, max_size=40
).map(lambda ls: [line.replace(b"\n", b"") for line in ls])


def is_valid(line: bytes) -> bool:
    """The independent plain-Python reference's verdict."""
    return reference_reason(line) is None


@pytest.mark.slow  # 150 generated inputs, each through the loader: ~20 s
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=lines_strategy,
    trailing_newline=st.booleans(),
    batch_bytes=st.integers(min_value=16, max_value=4096),
)
def test_loader_never_crashes_and_keeps_every_valid_event(
    lines: list[bytes], trailing_newline: bool, batch_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.ndjson"
        path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))
        with DuckDBWarehouse(Path(tmp) / "wh.duckdb") as wh:
            summary = ingest_files(wh, [path], batch_bytes=batch_bytes)
            payloads = sorted(
                row[0]
                for table in ("order_events", "payment_events", "shipment_events")
                for row in wh.con.execute(f"select payload::varchar from bronze.{table}").fetchall()
            )
            dead = wh.con.execute("select count(*) from bronze.dead_letter").fetchone()
    # A last line without its newline waits for it; blank and whitespace-only lines are skipped.
    complete = list(lines if trailing_newline else lines[:-1])
    if complete:  # a byte-order mark that starts the file is not part of its first line
        complete[0] = complete[0].removeprefix(b"\xef\xbb\xbf")
    non_empty = [line for line in complete if line and not line.isspace()]
    valid = sorted(line.decode() for line in non_empty if is_valid(line))
    assert payloads == valid
    assert summary.read == len(non_empty)
    assert summary.loaded == len(valid)
    assert dead is not None and dead[0] == summary.dead_lettered == len(non_empty) - len(valid)
