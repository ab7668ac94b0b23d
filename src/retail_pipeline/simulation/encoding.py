"""How the simulator writes a valid event: compact JSON assembled from precomputed fragments.

Valid events are assembled from JSON fragments rather than dicts passed through a serializer,
which is several times cheaper per event: every string value comes from a fixed ASCII vocabulary
(ids, statuses, carriers), so no escaping is needed, and each line is exactly what
``orjson.dumps`` would write for the same values in the contract's field order (the tests check
this). The field names, their order and which values are JSON strings come from the contract
(:mod:`retail_pipeline.events.contract`), not from a list of our own.

Money is exact: amounts are integers (cents, or 1/10000 for unit prices) written as decimal text,
never through a binary float.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import TypeVar

from retail_pipeline.events.contract import (
    ENVELOPE,
    EVENT_TYPE_TOPIC,
    ITEM_FIELDS,
    FieldSpec,
    Kind,
    event_fields,
)
from retail_pipeline.simulation.truth import (
    CENTS_PER_UNIT_PRICE,
    MS_PER_HOUR,
    LineItem,
    round_half_away,
)

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
EPOCH = date(1970, 1, 1)
"""Times are integer milliseconds since this day (UTC)."""
EVENT_VERSION = 1
"""The contract version the simulator writes by default (the contract's version 1 table)."""
ORDER_CREATED_V2 = 2
"""The version of ``order_created`` that adds ``channel`` and ``discount`` (written last)."""

_K = TypeVar("_K")
_V = TypeVar("_V")
_STRING_KINDS: frozenset[Kind] = frozenset({"text", "timestamp", "currency", "country", "channel"})
_ID_BLOCK = 4096
_MASK64 = (1 << 64) - 1
_MINUTE_SECOND = tuple(f"{m:02d}:{s:02d}." for m in range(60) for s in range(60))
_MILLIS_Z = tuple(f"{ms:03d}Z" for ms in range(1000))


def json_keys(fields: Sequence[FieldSpec]) -> dict[str, str]:
    """Per field of an object written in this order, the compact JSON between the previous value
    and this one: the previous value's closing quote, the comma, the key, the opening quote.

    ``json_keys(fields)["customer_id"] == '","customer_id":"'`` after the string ``order_id``;
    the first field's text starts with ``{``.
    """
    keys: dict[str, str] = {}
    before = "{"
    for spec in fields:
        quote = '"' if spec.kind in _STRING_KINDS else ""
        keys[spec.name] = f'{before}"{spec.name}":{quote}'
        before = quote + ","
    return keys


def json_end(fields: Sequence[FieldSpec]) -> str:
    """The compact JSON after the last value of an object written with ``fields``."""
    return ('"' if fields[-1].kind in _STRING_KINDS else "") + "}"


def _required(topic: str) -> tuple[FieldSpec, ...]:
    return tuple(spec for spec in event_fields(topic) if spec.required)


# The fragments of a valid event, from the contract: the envelope, then the topic's fields, then
# ``items`` (optional) on orders that carry a basket, then version 2's ``channel`` and ``discount``.
_ENVELOPE = json_keys(ENVELOPE)
_ORDER, _PAYMENT, _SHIPMENT = (
    json_keys(event_fields(t)) for t in ("orders", "payments", "shipments")
)
_EVENT_ID, _PRODUCED_AT = _ENVELOPE["event_id"], _ENVELOPE["produced_at"]
_ORDER_END = json_end(_required("orders")) + "\n"
_ORDER_NAMES = [spec.name for spec in event_fields("orders")]
_ITEMS_END = json_end(event_fields("orders")[: _ORDER_NAMES.index("items") + 1]) + "\n"
_V2_END = json_end(event_fields("orders")[: _ORDER_NAMES.index("discount") + 1]) + "\n"
_PAYMENT_END = json_end(_required("payments")) + "\n"
_FAILED_FIELDS = (*_required("payments"), FieldSpec("failure_reason", "text", required=False))
"""Failed payments say why, in a field outside the contract: producers may add fields."""
_FAILURE_REASON = json_keys(_FAILED_FIELDS)["failure_reason"]
_FAILED_END = json_end(_FAILED_FIELDS) + "\n"
_ITEM = json_keys(ITEM_FIELDS)
_ITEM_END = json_end(ITEM_FIELDS)
_EVENT_HEAD = {
    event_type: "".join(
        (
            _ENVELOPE["event_type"],
            event_type,
            _ENVELOPE["event_version"],
            str(EVENT_VERSION),
            _ENVELOPE["event_timestamp"],
        )
    )
    for event_type in EVENT_TYPE_TOPIC
}
"""Per event type, the text from the end of ``event_id``'s value to ``event_timestamp``'s."""
_EVENT_HEAD_V2 = _EVENT_HEAD["order_created"].replace(
    _ENVELOPE["event_version"] + str(EVENT_VERSION), _ENVELOPE["event_version"] + "2"
)


def scramble(value: int, salt: int) -> str:
    """16 hex digits from a bijection on 64-bit integers: unique ids that look random."""
    value = ((value ^ salt) * 0x9E3779B97F4A7C15) & _MASK64
    return f"{value ^ (value >> 29):016x}"


def decimal_text(value: int, digits: int) -> str:
    """A non-negative integer of ``10**-digits`` units as exact JSON decimal text.

    Trailing zeros are dropped but one decimal stays, as ``orjson`` writes the same value:
    ``decimal_text(1250, 4) == "0.125"``, ``decimal_text(15000, 2) == "150.0"``.
    """
    whole, fraction = divmod(value, 10**digits)
    decimals = f"{fraction:0{digits}d}".rstrip("0") or "0"
    return f"{whole}.{decimals}"


def money_text(cents: int) -> str:
    """A cents amount as a JSON number with at most two decimals."""
    return decimal_text(cents, 2)


def unit_price_text(units: int) -> str:
    """A unit price in 1/10000 as a JSON number with at most four decimals."""
    return decimal_text(units, 4)


def to_cents(units: int) -> int:
    """1/10000 units rounded to cents, half away from zero."""
    return round_half_away(units, CENTS_PER_UNIT_PRICE)


class _Memo(dict[_K, _V]):
    """A dict that computes a missing value with ``make`` and keeps it (a hit costs no call)."""

    def __init__(self, make: Callable[[_K], _V]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: _K) -> _V:
        value = self[key] = self._make(key)
        return value


def _currency_texts(currency: str) -> tuple[str, str]:
    """``currency`` with the keys around it: in an order, in a payment."""
    return (
        _ORDER["currency"] + currency + _ORDER["order_status"],
        _PAYMENT["currency"] + currency + _PAYMENT["payment_method"],
    )


class EventEncoder:
    """Writes valid events as compact JSON lines; draws event ids from ``rng``.

    The ``*_tail`` methods give the text after ``produced_at``'s value (source system, the
    topic's fields, the closing brace and newline); :meth:`line` puts the envelope in front.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._event_ids: list[str] = []
        self._hour_prefixes: dict[int, str] = {}
        self.money = _Memo(money_text)
        """Cents to :func:`money_text`, memoised: order totals and amounts repeat across events."""
        self._item_json: dict[LineItem, str] = {}
        self._sources: dict[str, str] = {}
        self._currencies = _Memo(_currency_texts)

    def timestamp(self, ms: int) -> str:
        """ISO-8601 UTC with milliseconds, e.g. ``2026-01-15T10:00:00.123Z``."""
        hour, rest = divmod(ms, MS_PER_HOUR)
        prefix = self._hour_prefixes.get(hour) or self._hour_prefix(hour)
        second, millis = divmod(rest, MS_PER_SECOND)
        return prefix + _MINUTE_SECOND[second] + _MILLIS_Z[millis]

    def _hour_prefix(self, hour: int) -> str:
        day, hour_of_day = divmod(hour, 24)
        prefix = f"{(EPOCH + timedelta(days=day)).isoformat()}T{hour_of_day:02d}:"
        self._hour_prefixes[hour] = prefix
        return prefix

    def line(
        self, event_type: str, event_ms: int, produced_ms: int, tail: str, version: int = 1
    ) -> bytes:
        """The whole event: a fresh ``event_id``, the envelope, then ``tail``; ``version`` 2 is
        for an ``order_created`` whose tail has version 2's fields."""
        prefixes = self._hour_prefixes
        hour, rest = divmod(event_ms, MS_PER_HOUR)
        event_prefix = prefixes.get(hour) or self._hour_prefix(hour)
        second, millis = divmod(rest, MS_PER_SECOND)
        produced_hour, produced_rest = divmod(produced_ms, MS_PER_HOUR)
        produced_prefix = prefixes.get(produced_hour) or self._hour_prefix(produced_hour)
        produced_second, produced_millis = divmod(produced_rest, MS_PER_SECOND)
        ids = self._event_ids
        if not ids:
            block = self._rng.randbytes(16 * _ID_BLOCK).hex()
            ids.extend(block[i : i + 32] for i in range(0, len(block), 32))
        return "".join(
            (
                _EVENT_ID,
                ids.pop(),
                _EVENT_HEAD[event_type] if version == EVENT_VERSION else _EVENT_HEAD_V2,
                event_prefix,
                _MINUTE_SECOND[second],
                _MILLIS_Z[millis],
                _PRODUCED_AT,
                produced_prefix,
                _MINUTE_SECOND[produced_second],
                _MILLIS_Z[produced_millis],
                tail,
            )
        ).encode()

    def source(self, source_system: str) -> str:
        """The start of a tail: ``source_system`` and its value."""
        text = self._sources.get(source_system)
        if text is None:
            text = self._sources[source_system] = _ENVELOPE["source_system"] + source_system
        return text

    def order_tail(
        self,
        source: str,
        order_id: str,
        customer_id: str,
        total_cents: int,
        currency: str,
        status: str,
        items: Sequence[LineItem] | None,
        channel_discount: tuple[str, int] | None = None,
    ) -> str:
        """An order event's tail; ``source`` from :meth:`source`, ``items`` None for none;
        ``channel_discount`` (channel, discount in cents) for an ``order_created`` version 2."""
        parts = [
            source,
            _ORDER["order_id"],
            order_id,
            _ORDER["customer_id"],
            customer_id,
            _ORDER["order_total"],
            self.money[total_cents],
            self._currencies[currency][0],
            status,
        ]
        if items is None:
            parts.append(_ORDER_END)
            return "".join(parts)
        cache = self._item_json
        fragments = []
        for item in items:
            fragment = cache.get(item)
            if fragment is None:
                product_id, quantity, price = item
                fragment = cache[item] = "".join(
                    (
                        _ITEM["product_id"],
                        product_id,
                        _ITEM["quantity"],
                        str(quantity),
                        _ITEM["unit_price"],
                        unit_price_text(price),
                        _ITEM_END,
                    )
                )
            fragments.append(fragment)
        parts.append(_ORDER["items"])
        parts.append("[" + ",".join(fragments) + "]")
        if channel_discount is None:
            parts.append(_ITEMS_END)
        else:
            channel, discount_cents = channel_discount
            parts += (
                _ORDER["channel"],
                channel,
                _ORDER["discount"],
                self.money[discount_cents],
                _V2_END,
            )
        return "".join(parts)

    def payment_tail(
        self,
        source: str,
        payment_id: str,
        order_id: str,
        amount: str,
        currency: str,
        method: str,
        status: str,
        failure_reason: str | None = None,
    ) -> str:
        """A payment event's tail; ``amount`` as JSON text (:attr:`money`)."""
        return "".join(
            (
                source,
                _PAYMENT["payment_id"],
                payment_id,
                _PAYMENT["order_id"],
                order_id,
                _PAYMENT["amount"],
                amount,
                self._currencies[currency][1],
                method,
                _PAYMENT["payment_status"],
                status,
                _PAYMENT_END
                if failure_reason is None
                else _FAILURE_REASON + failure_reason + _FAILED_END,
            )
        )

    def shipment_head(self, source: str, shipment_id: str, order_id: str, carrier: str) -> str:
        """A shipment event's tail up to the value of ``shipment_status``; the status and
        :data:`SHIPMENT_END` complete it."""
        return "".join(
            (
                source,
                _SHIPMENT["shipment_id"],
                shipment_id,
                _SHIPMENT["order_id"],
                order_id,
                _SHIPMENT["carrier"],
                carrier,
                _SHIPMENT["shipment_status"],
            )
        )


SHIPMENT_END = json_end(_required("shipments")) + "\n"
"""What follows the value of ``shipment_status``."""
