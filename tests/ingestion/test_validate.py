"""The SQL validator must accept exactly what the pydantic contract accepts."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail_pipeline.events.contract import ContractError, parse_event
from retail_pipeline.ingestion.validate import BatchValidator, stage

ORDER = {
    "event_id": "e-1",
    "event_type": "order_created",
    "event_version": 1,
    "event_timestamp": "2026-01-15T10:00:00.123Z",
    "produced_at": "2026-01-15T10:00:00.200Z",
    "source_system": "web",
    "order_id": "O-1",
    "customer_id": "C-1",
    "order_total": 41.0,
    "currency": "USD",
    "order_status": "CREATED",
    "items": [
        {"product_id": "P-1", "quantity": 2, "unit_price": 10.25},
        {"product_id": "P-2", "quantity": 1, "unit_price": 20.5},
    ],
}
PAYMENT = {
    "event_id": "e-2",
    "event_type": "payment_captured",
    "event_version": 1,
    "event_timestamp": "2026-01-15T10:05:00Z",
    "produced_at": "2026-01-15T10:05:01+00:00",
    "source_system": "psp",
    "payment_id": "PAY-1",
    "order_id": "O-1",
    "amount": 41,
    "currency": "USD",
    "payment_method": "card",
    "payment_status": "CAPTURED",
}
SHIPMENT = {
    "event_id": "e-3",
    "event_type": "shipment_dispatched",
    "event_version": 1,
    "event_timestamp": "2026-01-16T08:00:00Z",
    "produced_at": "2026-01-16T08:00:00Z",
    "source_system": "wms",
    "shipment_id": "S-1",
    "order_id": "O-1",
    "carrier": "DHL",
    "shipment_status": "DISPATCHED",
}
BASES = [ORDER, PAYMENT, SHIPMENT]


@pytest.fixture(scope="module")
def validator() -> BatchValidator:
    return BatchValidator()


def staged(lines: list[bytes], topics: list[str | None] | None = None) -> pa.Table:
    topic_column = pa.array(topics or [None] * len(lines), pa.string())
    return stage(pa.array(lines, pa.binary()), {"_arrival_topic": topic_column})


def reference(line: bytes, topic: str | None = None) -> str | None:
    try:
        parse_event(line, topic)
    except ContractError as exc:
        return exc.reason
    return None


def test_valid_events_pass_and_are_routed(validator: BatchValidator) -> None:
    out = validator.validate(staged([orjson.dumps(e) for e in BASES])).to_pylist()
    assert [r["reason"] for r in out] == [None, None, None]
    assert [r["_topic"] for r in out] == ["orders", "payments", "shipments"]
    assert [r["event_id"] for r in out] == ["e-1", "e-2", "e-3"]
    assert out[0]["event_timestamp"].isoformat() == "2026-01-15T10:00:00.123000+00:00"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"order_total": 42.0}, "order_total 42.0 != sum of items 41.0"),
        ({"event_type": "order_shipped"}, "unknown event_type order_shipped"),
        ({"event_version": 2}, "unsupported event_version 2"),
        ({"currency": "usd"}, "currency: must be a 3-letter upper-case code"),
        ({"event_timestamp": "2026-01-15 10:00:00"}, "event_timestamp: missing or not"),
        ({"event_timestamp": "2026-01-15T10:00:00+01:00"}, "event_timestamp: missing or not"),
        ({"items": None}, "items: order_created must carry an items array"),
        ({"items": [{"product_id": "P", "quantity": -1, "unit_price": 1}]}, "items: each"),
        ({"order_total": -1}, "order_total: missing, not a number or negative"),
        ({"event_id": ""}, "event_id: missing or not a non-empty string"),
    ],
)
def test_contract_violations_have_reasons(
    validator: BatchValidator, change: dict[str, object], reason: str
) -> None:
    line = orjson.dumps({**ORDER, **change})
    out = validator.validate(staged([line])).to_pylist()[0]
    assert out["reason"] is not None and out["reason"].startswith(reason)
    assert out["event_id"] is None and out["_topic"] is None
    assert reference(line) is not None


def test_wrong_topic_is_rejected(validator: BatchValidator) -> None:
    line = orjson.dumps(PAYMENT)
    out = validator.validate(staged([line], ["orders"])).to_pylist()[0]
    assert out["reason"] == "event_type payment_captured does not belong on topic orders"
    assert reference(line, "orders") is not None


def test_not_json_and_not_utf8(validator: BatchValidator) -> None:
    lines = [b"{oops", b"[1, 2]", b"\xff\xfe{}", b"   ", b"null", b'"text"', b'{"a": 1,}']
    reasons = [r["reason"] for r in validator.validate(staged(lines)).to_pylist()]
    assert reasons == [
        "invalid JSON",
        "payload is not a JSON object",
        "payload is not valid UTF-8",
        "invalid JSON",
        "payload is not a JSON object",
        "payload is not a JSON object",
        "invalid JSON",
    ]


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "2026-01-15T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-01-15T24:00:00Z",
            "2026-01-15T10:00:00.1234567Z",
            "USD",
            "EUR1",
            "order_updated",
            "payment_refunded",
            "shipment_failed",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with a few fields deleted, replaced or added, or its bytes cut."""
    event = dict(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*sorted(event), "items", "extra"]))
        action = draw(st.sampled_from(["delete", "replace", "replace"]))
        if action == "delete":
            event.pop(key, None)
        else:
            event[key] = draw(json_values)
    if draw(st.booleans()) and "items" in event and isinstance(event["items"], list):
        items = [dict(i) if isinstance(i, dict) else i for i in event["items"]]
        if items and isinstance(items[0], dict):
            items[0][draw(st.sampled_from(["product_id", "quantity", "unit_price"]))] = draw(
                json_values
            )
        event["items"] = items
    line = orjson.dumps(event)
    cut = draw(st.integers(0, 19))
    if cut == 0:
        line = line[: draw(st.integers(0, len(line)))]
    elif cut == 1:
        line = line[:-1] + b",}"
    elif cut == 2:
        line = line.replace(b":1,", b":NaN,", 1)
    return line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(mutated_events(), min_size=1, max_size=20),
    topic=st.sampled_from([None, "orders", "payments", "shipments"]),
)
def test_sql_validator_agrees_with_pydantic(lines: list[bytes], topic: str | None) -> None:
    validator = BatchValidator(threads=1)
    out = validator.validate(staged(lines, [topic] * len(lines))).to_pylist()
    for line, row in zip(lines, out, strict=True):
        expected = reference(line, topic)
        assert (row["reason"] is None) == (expected is None), (line, row["reason"], expected)
        if expected is None:
            event = parse_event(line)
            assert row["event_id"] == event.event_id
            assert row["event_type"] == event.event_type
            assert row["event_timestamp"] == event.event_timestamp
    validator.close()
