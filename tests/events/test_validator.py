"""The validator on the hostile inputs that used to reach Bronze, and the typed columns it makes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from retail_pipeline.events.validator import check_event, validate_events, validate_records
from tests.events.reference import reference_reason
from tests.messages import ORDER, PAYMENT, SHIPMENT


def line(event: dict[str, object], **changes: object) -> bytes:
    return orjson.dumps({**event, **changes})


def raw_payment(amount: str) -> bytes:
    """A payment whose amount is written exactly as given (no JSON library in between)."""
    return line(PAYMENT, amount=0).replace(b'"amount":0', b'"amount":' + amount.encode())


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (raw_payment("Infinity"), "invalid JSON"),
        (raw_payment("-NaN"), "invalid JSON"),
        (raw_payment("NaN"), "invalid JSON"),
        (raw_payment("1e309"), "amount"),
        (raw_payment("-1e309"), "amount"),
        (raw_payment("1e20"), "amount"),
        (raw_payment("1e16"), "amount"),
        (raw_payment("10000000000000000"), "amount"),
        (raw_payment("10.001"), "amount"),
        (raw_payment("-0.01"), "amount"),
        (raw_payment('"10.00"'), "amount"),
        (raw_payment("true"), "amount"),
        (raw_payment("1e-400"), "amount"),
        (line(PAYMENT, event_timestamp="0000-01-01T00:00:00Z"), "event_timestamp"),
        (line(PAYMENT, event_timestamp="1969-12-31T23:59:59Z"), "event_timestamp"),
        (line(PAYMENT, event_timestamp="2100-01-01T00:00:00Z"), "event_timestamp"),
        (line(PAYMENT, event_timestamp="2026-02-30T00:00:00Z"), "event_timestamp"),
        (line(PAYMENT, event_timestamp="2026-01-15T10:00:00+00:00"), "event_timestamp"),
        (line(PAYMENT, event_timestamp="2026-01-15T10:00:00"), "event_timestamp"),
        (line(PAYMENT, event_timestamp="2026-01-15T10:00:00z"), "event_timestamp"),
        (line(PAYMENT, produced_at="2026-01-15T10:00:00.1234567Z"), "produced_at"),
        (line(PAYMENT, currency="usd"), "currency"),
        (line(PAYMENT, currency="ZZZ"), "currency"),
        (line(PAYMENT, event_version=2), "event_version"),
        (line(PAYMENT, event_version=True), "event_version"),
        (line(PAYMENT, event_version=1.0), "event_version"),
        (line(PAYMENT, payment_id=""), "payment_id"),
        (line(PAYMENT, order_id=7), "order_id"),
        (line(ORDER, items=[{"product_id": "P-1", "quantity": 0, "unit_price": 1}]), "items"),
        (line(ORDER, items=[{"product_id": "P-1", "quantity": 2.0, "unit_price": 1}]), "items"),
        (line(ORDER, items=[{"product_id": "P", "quantity": 10**9 + 1, "unit_price": 0}]), "items"),
        (line(ORDER, order_total=42.0), "order_total"),
        (line(ORDER, items=None), "items"),
        (line(SHIPMENT, event_type="shipment_lost"), "event_type"),
    ],
)
def test_hostile_messages_are_dead_lettered_naming_the_field(message: bytes, field: str) -> None:
    reason = check_event(message)
    assert reason is not None and field in reason, reason
    assert reference_reason(message) is not None


def test_repeated_keys_are_dead_lettered_at_any_depth() -> None:
    top = raw_payment("5.00").replace(b'"currency"', b'"amount":-5.00,"currency"')
    same = raw_payment("5.00").replace(b'"currency"', b'"amount":5.00,"currency"')
    nested = line(ORDER).replace(b'"quantity":2,', b'"quantity":2,"quantity":3,', 1)
    extra = line(SHIPMENT).replace(b'"carrier"', b'"x":{"a":1,"a":2},"carrier"')
    for message in (top, same, nested, extra):
        reason = check_event(message)
        assert reason is not None and reason.startswith("repeated key"), (message, reason)
        assert reference_reason(message) is not None


def test_extra_fields_and_colons_in_strings_are_fine() -> None:
    messages = [
        line(PAYMENT, note="a:b:c", extra={"nested": [1, {"k": "v"}]}),
        line(SHIPMENT, event_id="urn:uuid:1234", carrier="DHL: express"),
        line(ORDER, items=[{"product_id": "P:1", "quantity": 1, "unit_price": 41, "x": 1}]),
        b'  { "event_id" : "e" , ' + line(SHIPMENT)[len(b'{"event_id":"e-3",') :] + b"  ",
    ]
    for message in messages:
        assert check_event(message) is None, message
        assert reference_reason(message) is None


def test_money_is_exact_decimal_text_through_to_the_typed_columns() -> None:
    amounts = ["9999999999999999.99", "1234567890123456.78", "0.1", "1E+2", "10.500", "-0", "7"]
    result = validate_events([raw_payment(a) for a in amounts])
    assert result.dead_reasons == []
    got = result.events["payments"].column("amount").to_pylist()
    assert got == [Decimal(a).quantize(Decimal("0.01")) for a in amounts]
    assert got[0] == Decimal("9999999999999999.99")


def test_sub_cent_unit_prices_and_order_totals_are_exact() -> None:
    items = [{"product_id": "P-1", "quantity": 1000, "unit_price": 0.125}]
    message = line(ORDER, items=items, order_total=125)
    result = validate_events([message])
    assert result.dead_reasons == []
    row = result.events["orders"].to_pylist()[0]
    assert row["items"] == [
        {"product_id": "P-1", "quantity": 1000, "unit_price": Decimal("0.1250")}
    ]
    assert row["order_total"] == Decimal("125.00")
    # 10^9 x 9999999.9999 = 9999999999900000 exactly; a binary double cannot tell the cent.
    huge = line(ORDER, items=[{"product_id": "P", "quantity": 10**9, "unit_price": 0}])
    huge = huge.replace(b'"unit_price":0', b'"unit_price":9999999.9999')
    exact = huge.replace(b'"order_total":41.0', b'"order_total":9999999999900000.00')
    off = huge.replace(b'"order_total":41.0', b'"order_total":9999999999899999.98')
    assert check_event(exact) is None
    assert check_event(off) is not None and reference_reason(off) is not None


def test_timestamps_are_utc_instants_within_the_range() -> None:
    edges = ["1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999999Z", "2024-02-29T12:00:00.5Z"]
    result = validate_events([line(SHIPMENT, event_timestamp=ts) for ts in edges])
    assert result.dead_reasons == []
    assert result.events["shipments"].column("event_timestamp").to_pylist() == [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=UTC),
    ]


def test_topic_and_utf8_and_batch_order() -> None:
    messages = [line(PAYMENT), b"\xff\xfe{}", line(ORDER), b"", b"[1]", line(SHIPMENT)]
    result = validate_events(messages, ["orders", None, "orders", None, None, None])
    reasons = result.reasons()
    assert reasons[0] == "event_type: payment_captured does not belong on topic orders"
    assert reasons[1] is not None and "UTF-8" in reasons[1]
    assert reasons[2] is None and reasons[5] is None
    assert reasons[3] is not None and reasons[4] is not None
    assert result.events["orders"].column("_row").to_pylist() == [2]
    assert result.events["shipments"].column("_row").to_pylist() == [5]
    assert result.events["orders"].column("payload").to_pylist() == [messages[2].decode()]


def test_lone_surrogate_escapes_are_refused() -> None:
    message = line(SHIPMENT).replace(b'"S-1"', b'"S-\\ud800"')
    assert check_event(message) is not None
    assert reference_reason(message) is not None


def test_reference_records() -> None:
    good = b'{"product_id":"P1","product_name":"Mug","category":"home","price":12.5,"active":true}'
    bad = [
        good.replace(b"12.5", b"12.555"),
        good.replace(b"12.5", b"-1"),
        good.replace(b"true", b"1"),
        good.replace(b'"category":"home",', b'"category":"home","category":"x",'),
        good.replace(b"12.5", b"1e16"),
    ]
    result = validate_records("products", [good, *bad])
    assert result.rows.column("price").to_pylist() == [Decimal("12.50")]
    assert result.dead_rows == [1, 2, 3, 4, 5]
    assert [r.split(":")[0] for r in result.dead_reasons] == [
        "price",
        "price",
        "active",
        "repeated key 'category'",
        "price",
    ]
    customer = (
        b'{"customer_id":"C1","name":"A","email":"a@x","country":"DE",'
        b'"created_at":"2026-01-01T00:00:00Z"}'
    )
    result = validate_records("customers", [customer, customer.replace(b"DE", b"de")])
    assert result.rows.num_rows == 1 and result.dead_reasons[0].startswith("country")


# order_created version 2: channel and discount (docs/event-contract.md).
V2 = {**ORDER, "event_version": 2, "channel": "store", "discount": 1.25, "order_total": 39.75}


def test_version_2_is_typed_and_version_1_keys_of_that_name_mean_nothing() -> None:
    v1_with_keys = line(ORDER, event_id="e-2", channel=["web"], discount="5 percent")
    result = validate_events([line(V2), v1_with_keys, line(ORDER, event_id="e-3")])
    assert result.dead_reasons == []
    orders = result.events["orders"].select(["event_version", "channel", "discount"])
    assert orders.to_pylist() == [
        {"event_version": 2, "channel": "store", "discount": Decimal("1.25")},
        {"event_version": 1, "channel": None, "discount": None},
        {"event_version": 1, "channel": None, "discount": None},
    ]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (line({k: v for k, v in V2.items() if k != "channel"}), "channel: missing"),
        (line({k: v for k, v in V2.items() if k != "discount"}), "discount: missing"),
        (line(V2, channel="tv"), "channel: not one of"),
        (line(V2, channel=None), "channel: not one of"),
        (line(V2, discount="1.25"), "discount: must be a JSON number"),
        (line(V2, discount=1.255), "discount: more than 2 decimal places"),
        (line(V2, discount=41.01, order_total=0), "discount: 41.01 exceeds the sum of items 41"),
        (line(V2, order_total=41.0), "order_total: 41.00 != sum of items less discount 1.25"),
        (line(V2, event_type="order_updated"), "event_version: unsupported version 2"),
        (line(V2, event_version=3), "event_version: unsupported version 3"),
    ],
)
def test_a_broken_version_2_is_dead_lettered(message: bytes, reason: str) -> None:
    assert reference_reason(message) is not None
    got = check_event(message, "orders")
    assert got is not None and got.startswith(reason), got


def test_an_escaped_channel_and_a_discount_as_large_as_the_items_are_valid() -> None:
    message = line(V2, discount=41, order_total=0).replace(b'"store"', b'"st\\u006fre"')
    assert reference_reason(message) is None
    assert check_event(message, "orders") is None


def test_a_release_without_version_2_is_emulated_by_one_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the previous release did with version 2 (dead-letter it, as any unknown version),
    emulated by replacing one entry of ``EVENT_VERSIONS``; restored, the message is valid."""
    from retail_pipeline.events import contract
    from tests.events import reference

    with monkeypatch.context() as patch:
        patch.setitem(contract.EVENT_VERSIONS, "order_created", frozenset({1}))
        patch.setitem(reference.VERSIONS, "order_created", frozenset({1}))
        assert check_event(line(V2)) == "event_version: unsupported version 2"
        assert check_event(line(V2, order_total=1)) == "event_version: unsupported version 2"
        assert reference_reason(line(V2)) == "event_version: unsupported version 2"
        assert check_event(line(ORDER)) is None
    assert check_event(line(V2)) is None
    assert reference_reason(line(V2)) is None
