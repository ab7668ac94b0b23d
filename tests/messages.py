"""Sample events and a strategy of damaged ones, shared by the loader tests."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

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
    "produced_at": "2026-01-15T10:05:01Z",
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
