"""The fault injector: what goes wrong between the shop and the event files, on purpose.

One uniform draw per valid event decides its fault (:class:`FaultRates`): delivered twice (a
producer retry or a replay), minutes late (out of order), hours late, next to a garbage line that
breaks one rule of the contract (:data:`MALFORMED_KINDS`, among them the event types of
:data:`UNKNOWN_EVENT_TYPES`), or followed by an orphan (a valid payment or shipment event for an
order that never gets ``order_created``; the injector decides when, the shop model makes it, as it
owns the ids and the vocabulary). Garbage lines are derived from the valid line next to them; the
raw text that a serializer would refuse to write (``NaN``, ``1e309``, a repeated key) is spliced
in after serialising. Which fields an event has, which hold money and which is the entity's id
come from the contract (:mod:`retail_pipeline.events.contract`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from retail_pipeline.events.contract import (
    ENVELOPE,
    EVENT_TYPE_TOPIC,
    ITEMS_REQUIRED,
    REPORTING_CURRENCY,
    SUPPORTED_EVENT_VERSIONS,
    TOPIC_FIELDS,
    TOPICS,
    event_fields,
)
from retail_pipeline.simulation.draws import Draws, cumulative
from retail_pipeline.simulation.encoding import MS_PER_MINUTE, MS_PER_SECOND
from retail_pipeline.simulation.truth import MS_PER_HOUR

# kind: (weight, what the event needs for the kind to apply)
_MALFORMED_SPECS: dict[str, tuple[int, str]] = {
    "invalid_json": (10, "any"),
    "missing_field": (8, "any"),
    "wrong_type": (8, "any"),
    "unknown_event_type": (5, "any"),
    "unsupported_version": (4, "any"),
    "truncated": (8, "any"),
    "invalid_utf8": (4, "any"),
    "bad_timestamp": (5, "any"),
    "invalid_value": (6, "any"),
    "non_finite_money": (6, "money"),
    "money_out_of_range": (5, "money"),
    "money_too_precise": (6, "money"),
    "negative_money": (5, "money"),
    "money_as_string": (5, "money"),
    "duplicate_key": (8, "any"),
    "timestamp_out_of_range": (6, "any"),
    "timestamp_not_z": (5, "any"),
    "bad_currency": (5, "money"),
    "bad_quantity": (6, "items"),
    "bad_version": (5, "any"),
}
MALFORMED_KINDS: tuple[str, ...] = tuple(_MALFORMED_SPECS)
"""Kinds of garbage line the injector writes; each breaks a rule of docs/metrics.md's "What a valid
event is" (the money kinds only on topics with money, ``bad_quantity`` only on lines with items),
so the validator dead-letters every one (a test checks)."""

UNKNOWN_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "orders": ("order_shipped", "order_returned", "ORDER_CREATED"),
    "payments": ("payment_voided", "payment_chargeback", "payment_pending"),
    "shipments": ("shipment_lost", "shipment_returned", "shipment_delayed"),
}
"""Per topic, the event types a garbage line of kind ``unknown_event_type`` carries: plausible
names that are in no topic of the contract (a test checks), so the validator must reject them."""


@dataclass(frozen=True)
class FaultRates:
    """Fault probabilities, each a fraction of valid events.

    One draw per valid event decides its fault, so an event gets at most one and the rates
    must sum to at most 1.
    """

    duplicate: float = 0.02
    """An extra byte-identical copy of the event (same ``event_id``), arriving a little later."""
    out_of_order: float = 0.05
    """The event arrives 1-30 minutes late, after events that happened after it."""
    late: float = 0.01
    """The event arrives 1-12 hours late."""
    malformed: float = 0.01
    """An extra garbage line is written next to the event (see ``MALFORMED_KINDS``)."""
    orphan: float = 0.002
    """An extra valid payment or shipment event for an order that is never created."""

    def __post_init__(self) -> None:
        for name in ("duplicate", "out_of_order", "late", "malformed", "orphan"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name} must be in [0, 1], got {value}")
        if self.total > 1.0:
            raise ValueError(f"fault rates must sum to at most 1, got {self.total}")

    @property
    def total(self) -> float:
        """The fraction of valid events that get some fault."""
        return self.duplicate + self.out_of_order + self.late + self.malformed + self.orphan

    @classmethod
    def none(cls) -> FaultRates:
        """No faults at all: every line is a unique, valid, non-orphan event."""
        return cls(duplicate=0.0, out_of_order=0.0, late=0.0, malformed=0.0, orphan=0.0)


# Raw JSON text for malformed lines: each breaks a rule of docs/metrics.md "What a valid event is".
_NON_FINITE = (b"1e309", b"-1e309", b"NaN", b"Infinity", b"-Infinity", b"1E+400")
_TOO_LARGE = (
    b"1e20",
    b"1e16",
    b"10000000000000000",
    b"10000000000000000.00",
    b"12345678901234567.5",
)
_OUT_OF_RANGE_TIMESTAMPS = (
    "0000-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "1969-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00Z",
    "2100-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59Z",
)
_BAD_CURRENCIES = ("usd", "eur", "Gbp", "ZZZ", "ABC", "US", "USDD", "", "$")
_BAD_QUANTITIES = (b"0", b"2.0", b"1000000001", b"true")
_BAD_VERSIONS = (b"true", b"1.0", b"false", b"0")

_MONEY_FIELD = {
    topic: next(spec.name for spec in fields if spec.kind == "money")
    for topic, fields in TOPIC_FIELDS.items()
    if any(spec.kind == "money" for spec in fields)
}
"""Per topic with money, the field that holds it (``order_total``, ``amount``)."""
_ID_FIELD = {topic: fields[0].name for topic, fields in TOPIC_FIELDS.items()}
"""Per topic, its entity's id: the topic's first field (``order_id``, ``payment_id``, ...)."""
_REQUIRED = {
    topic: tuple(spec.name for spec in event_fields(topic) if spec.required) for topic in TOPICS
}
_TIMESTAMPS = tuple(spec.name for spec in ENVELOPE if spec.kind == "timestamp")
_V2 = 2
"""``order_created`` at this version carries ``channel`` and ``discount``."""
_RAW = "@raw@"
"""Placeholder string replaced by raw JSON text (``NaN``, ``1e309``) after serialising."""
_DUPLICATE = "@dup@"
"""Placeholder key replaced by a repeated key after serialising."""


@dataclass(slots=True)
class FaultCounts:
    """What the injector passed on for one topic."""

    valid: int = 0
    """Distinct valid events, orphans included."""
    orphans: int = 0
    duplicates: int = 0
    malformed: int = 0
    out_of_order: int = 0
    late: int = 0
    malformed_by_kind: dict[str, int] = field(default_factory=dict)


Put = Callable[[int, int, bytes], None]
"""Queues a line: ``put(arrival_ms, topic_index, line)``."""


class FaultInjector:
    """Passes each valid event on to the event files with at most one fault, and counts."""

    def __init__(self, draws: Draws, rates: FaultRates, put: Put) -> None:
        self.rng = draws.rng
        self._random = draws.random
        self._between = draws.between
        self._pick = draws.pick
        self._put = put
        self.counts = [FaultCounts() for _ in TOPICS]
        # Fault thresholds on one uniform draw per valid event.
        self._p_any = rates.total
        self._p_late = rates.late
        self._p_out_of_order = self._p_late + rates.out_of_order
        self._p_duplicate = self._p_out_of_order + rates.duplicate
        self._p_malformed = self._p_duplicate + rates.malformed
        # Malformed kinds that apply, by topic and whether the line carries items.
        self._malformed_tables: dict[tuple[int, bool], tuple[tuple[str, ...], list[float]]] = {}
        for topic, topic_name in enumerate(TOPICS):
            for has_items in (False, True):
                needs = {"any"}
                if topic_name in _MONEY_FIELD:
                    needs.add("money")
                if has_items:
                    needs.add("items")
                kinds = tuple(k for k, (_, need) in _MALFORMED_SPECS.items() if need in needs)
                weights = cumulative([_MALFORMED_SPECS[k][0] for k in kinds])
                self._malformed_tables[topic, has_items] = (kinds, weights)

    def deliver(self, topic: int, arrival_ms: int, line: bytes, *, orphan: bool) -> bool:
        """Queue one valid event to arrive at ``arrival_ms``, or later, with at most one fault.

        True when an orphan event should follow (never after an orphan).
        """
        counts = self.counts[topic]
        counts.valid += 1
        if orphan:
            counts.orphans += 1
        draw = self._random()
        if draw >= self._p_any:
            self._put(arrival_ms, topic, line)
            return False
        if draw < self._p_late:
            counts.late += 1
            self._put(arrival_ms + self._between(MS_PER_HOUR, 12 * MS_PER_HOUR), topic, line)
        elif draw < self._p_out_of_order:
            counts.out_of_order += 1
            delay = self._between(MS_PER_MINUTE, 30 * MS_PER_MINUTE)
            self._put(arrival_ms + delay, topic, line)
        elif draw < self._p_duplicate:
            counts.duplicates += 1
            self._put(arrival_ms, topic, line)
            if self._random() < 0.8:  # producer retry
                arrival_ms += self._between(1, 5 * MS_PER_SECOND)
            else:  # replay from an upstream log
                arrival_ms += self._between(MS_PER_MINUTE, 6 * MS_PER_HOUR)
            self._put(arrival_ms, topic, line)
        elif draw < self._p_malformed:
            counts.malformed += 1
            garbage = self.garbage(topic, line)
            if self._random() < 0.5:
                self._put(arrival_ms, topic, garbage)
                self._put(arrival_ms, topic, line)
            else:
                self._put(arrival_ms, topic, line)
                self._put(arrival_ms, topic, garbage)
        else:
            self._put(arrival_ms, topic, line)
            return not orphan
        return False

    def garbage(self, topic: int, line: bytes) -> bytes:
        """A garbage line derived from a valid one; it breaks a rule of the event contract."""
        rng = self.rng
        topic_name = TOPICS[topic]
        kinds, cum_weights = self._malformed_tables[topic, b'"items":[' in line]
        kind: str = self._pick(kinds, cum_weights)
        counts = self.counts[topic].malformed_by_kind
        counts[kind] = counts.get(kind, 0) + 1

        body = line.rstrip(b"\n")
        if kind == "truncated":  # a strict prefix of the real line
            return body[: self._between(1, len(body))] + b"\n"
        event: dict[str, Any] = orjson.loads(body)
        event["event_id"] = f"{rng.getrandbits(128):032x}"
        raw = b""  # JSON text for the _RAW placeholder value
        repeated = b""  # a '"key":value' pair for the _DUPLICATE placeholder key
        if kind == "invalid_json":
            variant = rng.randrange(5)
            if variant == 0:
                out = repr(event).encode()  # single quotes: a Python dict, not JSON
            elif variant == 1:
                out = orjson.dumps(event)[:-1] + b",}"  # trailing comma
            elif variant == 2:
                out = orjson.dumps(event).replace(b'":', b'"=', 1)
            elif variant == 3:
                out = orjson.dumps(event) + orjson.dumps(event)  # two objects on one line
            else:
                out = rng.choice(
                    (
                        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                        b"ERROR producer: delivery timed out",
                        b"\x00\x00\x00\x00",
                    )
                )
            return out + b"\n"
        if kind == "invalid_utf8":  # inside event_type, so a lenient decoder still rejects it
            event_type: str = event["event_type"]
            bad = rng.choice((b"\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80"))
            mangled = b'"' + event_type[:5].encode() + bad + event_type[5:].encode() + b'"'
            return (
                orjson.dumps(event).replace(b'"' + event_type.encode() + b'"', mangled, 1) + b"\n"
            )
        if kind == "missing_field":
            required = list(_REQUIRED[topic_name])
            if event["event_type"] in ITEMS_REQUIRED:
                required.append("items")
            if event["event_version"] == _V2:  # order_created version 2
                required += ("channel", "discount")
            del event[rng.choice(required)]
        elif kind == "wrong_type":
            self._wrong_type(topic_name, event)
        elif kind == "unknown_event_type":
            event["event_type"] = rng.choice(UNKNOWN_EVENT_TYPES[topic_name])
        elif kind == "unsupported_version":
            event["event_version"] = max(SUPPORTED_EVENT_VERSIONS) + 1
        elif kind == "bad_timestamp":
            key = rng.choice(_TIMESTAMPS)
            value: str = event[key]
            event[key] = rng.choice(
                (
                    value.replace("T", " ").rstrip("Z"),
                    value[:-1] + "+01:00",
                    value[:-1],
                    value[:8] + "32" + value[10:],  # no such day
                    value[:11] + "25" + value[13:],  # no such hour
                )
            )
        elif kind == "invalid_value":
            self._invalid_value(topic_name, event)
        elif kind in ("non_finite_money", "money_out_of_range"):
            container, key = self._money_target(topic_name, event)
            container[key] = _RAW
            raw = rng.choice(_NON_FINITE if kind == "non_finite_money" else _TOO_LARGE)
        elif kind == "money_too_precise":  # one decimal too many, within a cent of the value
            container, key = self._money_target(topic_name, event)
            digits = 4 if key == "unit_price" else 2
            whole, fraction = divmod(round(container[key] * 10**digits), 10**digits)
            container[key] = _RAW
            raw = f"{whole}.{fraction:0{digits}d}{rng.randrange(1, 10)}".encode()
        elif kind == "negative_money":
            container, key = self._money_target(topic_name, event)
            container[key] = -container[key] if container[key] else -0.01
        elif kind == "money_as_string":
            container, key = self._money_target(topic_name, event)
            digits = 4 if key == "unit_price" else 2
            container[key] = f"{container[key]:.{digits}f}"
        elif kind == "duplicate_key":
            repeated = self._repeated_key(topic_name, event)
        elif kind == "timestamp_out_of_range":
            key = rng.choice(_TIMESTAMPS)
            event[key] = rng.choice(_OUT_OF_RANGE_TIMESTAMPS)
        elif kind == "timestamp_not_z":
            key = rng.choice(_TIMESTAMPS)
            value = event[key]
            event[key] = value[:-1] + rng.choice(("+00:00", "", "z", "-00:00", "+0000"))
        elif kind == "bad_currency":
            event["currency"] = rng.choice(_BAD_CURRENCIES)
        elif kind == "bad_quantity":
            item = event["items"][int(self._random() * len(event["items"]))]
            item["quantity"] = _RAW
            raw = rng.choice(_BAD_QUANTITIES)
        else:  # bad_version: a value other than the integer 1
            event["event_version"] = _RAW
            raw = rng.choice(_BAD_VERSIONS)
        out = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
        if raw:
            out = out.replace(b'"' + _RAW.encode() + b'"', raw, 1)
        if repeated:
            out = out.replace(b'"' + _DUPLICATE.encode() + b'":0', repeated, 1)
        return out

    def _money_target(self, topic_name: str, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The object and key of a money value to spoil: the event's amount or a unit price."""
        items = event.get("items")
        if items and self._random() < 0.4:
            return items[int(self._random() * len(items))], "unit_price"
        return event, _MONEY_FIELD[topic_name]

    def _repeated_key(self, topic_name: str, event: dict[str, Any]) -> bytes:
        """Mark a place for a repeated key and return the key with a second, different value.

        The second value is valid on its own (except a negated amount), so only the repetition
        makes the line invalid: readers disagree on which value wins.
        """
        rng = self.rng
        options = [_ID_FIELD[topic_name], "event_type", "event_timestamp"]
        if topic_name != "orders":
            options.append("order_id")
        if topic_name in _MONEY_FIELD:
            options += [_MONEY_FIELD[topic_name], "currency"]
        if event.get("items"):
            options.append("quantity")
        key = rng.choice(options)
        value: Any
        if key == "quantity":
            item = event["items"][0]
            item[_DUPLICATE] = 0
            value = item["quantity"] % 3 + 1
        else:
            event[_DUPLICATE] = 0
            current = event[key]
            if key == "event_type":
                value = rng.choice(
                    [
                        t
                        for t, topic in EVENT_TYPE_TOPIC.items()
                        if topic == topic_name and t != current
                    ]
                )
            elif key == "event_timestamp":
                value = event["produced_at"]  # a valid, later timestamp
            elif key == "currency":
                value = "EUR" if current != "EUR" else REPORTING_CURRENCY
            elif key == _MONEY_FIELD.get(topic_name):
                value = rng.choice((-current if current else -5.0, round(current + 5.0, 2)))
            else:  # an id
                value = f"{current[:4]}{rng.getrandbits(64):016x}"
        return f'"{key}":'.encode() + orjson.dumps(value)

    def _wrong_type(self, topic_name: str, event: dict[str, Any]) -> None:
        rng = self.rng
        options = ["version", "id", "timestamp"]
        if topic_name in _MONEY_FIELD:
            options.append("money")
        if event.get("items"):
            options += ["items", "quantity"]
        option = rng.choice(options)
        if option == "version":
            event["event_version"] = str(event["event_version"])
        elif option == "id":
            event[_ID_FIELD[topic_name]] = rng.randrange(1, 10**9)
        elif option == "timestamp":
            event["event_timestamp"] = self._between(1_700_000_000_000, 1_800_000_000_000)
        elif option == "money":
            key = _MONEY_FIELD[topic_name]
            event[key] = f"{event[key]:.2f}"
        elif option == "items":
            event["items"] = orjson.dumps(event["items"]).decode()
        else:
            event["items"][0]["quantity"] = rng.choice(("2", 1.5, None))

    def _invalid_value(self, topic_name: str, event: dict[str, Any]) -> None:
        rng = self.rng
        options = ["empty_id"]
        if topic_name in _MONEY_FIELD:
            options += ["currency", "negative"]
        if event.get("items"):
            options += ["total_mismatch", "negative_quantity"]
        if event["event_version"] == _V2:
            options += ["wrong_discount", "unknown_channel"]
        option = rng.choice(options)
        if option == "empty_id":
            event[_ID_FIELD[topic_name]] = ""
        elif option == "currency":
            event["currency"] = rng.choice(("usd", "US", "DOLLAR"))
        elif option == "negative":
            key = _MONEY_FIELD[topic_name]
            event[key] = -event[key] if event[key] else -1.0
        elif option == "total_mismatch":
            event["order_total"] = round(event["order_total"] + rng.choice((5.0, 0.5, 10.0)), 2)
        elif option == "wrong_discount":  # the total no longer nets it off (or it exceeds Σ)
            event["discount"] = round(event["discount"] + rng.choice((5.0, 0.5, 1000.0)), 2)
        elif option == "unknown_channel":
            event["channel"] = rng.choice(("Web", "phone", "", "MOBILE_APP"))
        else:
            event["items"][0]["quantity"] = -1
