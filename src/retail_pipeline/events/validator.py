"""The one validator: the contract (:mod:`retail_pipeline.events.contract`) applied to messages.

Every path (files, Kafka, batch snapshots) calls it once per message, before the warehouse; the
warehouse stores what it is given. It returns, per topic, the typed Bronze columns of the valid
events (money as exact decimals, timestamps as UTC instants, items as a nested column) and, for
the rest, a one-line reason naming the field.

How it is fast: msgspec decodes each message into a typed Struct in C (structure, types,
required fields, integer ranges); the checks msgspec cannot express run vectorised over whole
columns with Arrow (timestamp format and range, currency codes, money text, order totals, the
repeated-key guard). Money fields are decoded as raw JSON text (``msgspec.Raw``), so a number
never passes through a binary float. The few values the fast checks cannot settle (exponent
notation, suspected repeated keys, impossible calendar dates) get an exact check in Python.

Versions are per event type and read from ``contract.EVENT_VERSIONS`` on every call (the decoder
knows every version some type accepts), so a test can emulate a release without a version by
replacing one entry. The fields a later version adds are decoded as raw JSON (``msgspec.Raw``,
absent = ``UNSET``) whatever the version, then typed only where their ``(event_type,
event_version)`` requires them: a version-1 message may carry such keys with any value, and its
typed columns hold NULL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retail_pipeline.events import contract as _contract
from retail_pipeline.events.contract import (
    CHANNELS,
    EVENT_TYPE_TOPIC,
    ISO_4217,
    ITEM_FIELDS,
    ITEMS_REQUIRED,
    MAX_QUANTITY,
    MIN_QUANTITY,
    MONEY_DECIMALS,
    MONEY_LIMIT,
    ORDER_TOTAL_TOLERANCE,
    REFERENCE_FIELDS,
    SUPPORTED_EVENT_VERSIONS,
    TIMESTAMP_MAX,
    TIMESTAMP_MIN,
    TOPIC_EVENT_TYPES,
    UNIT_PRICE_DECIMALS,
    VERSION_FIELDS,
    FieldSpec,
    Kind,
    event_fields,
)

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_Quantity = Annotated[int, msgspec.Meta(ge=MIN_QUANTITY, le=MAX_QUANTITY)]
_TS_RE = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z$"
)
_PLAIN_MONEY = r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,%d})?$"
_DECIMALS = {"money": MONEY_DECIMALS, "unit_price": UNIT_PRICE_DECIMALS}
ARROW_TYPES: dict[Kind, pa.DataType] = {
    "text": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "money": pa.decimal128(18, 2),
    "unit_price": pa.decimal128(20, 4),
    "quantity": pa.int64(),
    "currency": pa.string(),
    "country": pa.string(),
    "version": pa.int32(),
    "bool": pa.bool_(),
    "channel": pa.string(),
}
ITEM_TYPE = pa.list_(pa.struct([(f.name, ARROW_TYPES[f.kind]) for f in ITEM_FIELDS]))
ARROW_TYPES["items"] = ITEM_TYPE
_WIDE = pa.decimal256(60, 4)


def _python_type(kind: Kind) -> Any:
    if kind == "items":
        return list[_Item]
    return {
        "text": _NonEmpty,
        "timestamp": str,
        "money": msgspec.Raw,
        "unit_price": msgspec.Raw,
        "quantity": _Quantity,
        "currency": str,
        "country": str,
        "version": Literal[tuple(sorted(SUPPORTED_EVENT_VERSIONS))],
        "bool": bool,
        "channel": msgspec.Raw,
    }[kind]


_Item: Any = msgspec.defstruct(
    "Item", [(f.name, _python_type(f.kind)) for f in ITEM_FIELDS], gc=False
)


def _struct_fields(fields: Sequence[FieldSpec], items_required: bool) -> list[Any]:
    out: list[Any] = []
    for spec in fields:
        if spec.name == "event_type":
            continue  # the tag of the union
        kind = _python_type(spec.kind)
        if spec.kind == "items" and not items_required:
            out.append((spec.name, kind | None | msgspec.UnsetType, msgspec.UNSET))
        elif not spec.required and spec.kind != "items":  # a later version's field, raw
            out.append((spec.name, msgspec.Raw | msgspec.UnsetType, msgspec.UNSET))
        else:
            out.append((spec.name, kind))
    return out


_EVENT_STRUCTS: dict[str, type[msgspec.Struct]] = {
    event_type: msgspec.defstruct(
        "".join(part.title() for part in event_type.split("_")),
        _struct_fields(event_fields(topic), event_type in ITEMS_REQUIRED),
        tag_field="event_type",
        tag=event_type,
        gc=False,
    )
    for topic, types in TOPIC_EVENT_TYPES.items()
    for event_type in types
}
_STRUCT_TYPE = {struct: event_type for event_type, struct in _EVENT_STRUCTS.items()}
_STRUCT_TOPIC = {
    struct: EVENT_TYPE_TOPIC[event_type] for struct, event_type in _STRUCT_TYPE.items()
}
_STRUCT_FIELDS = {
    topic: _EVENT_STRUCTS[types[0]].__struct_fields__ for topic, types in TOPIC_EVENT_TYPES.items()
}
assert all(
    struct.__struct_fields__ == _STRUCT_FIELDS[EVENT_TYPE_TOPIC[event_type]]
    for event_type, struct in _EVENT_STRUCTS.items()
), "every event type of a topic lists its fields in the same order"


def _build_decoder() -> msgspec.json.Decoder[Any]:
    union: Any = None
    for struct in _EVENT_STRUCTS.values():
        union = struct if union is None else union | struct
    return msgspec.json.Decoder(union)


_EVENT_DECODER = _build_decoder()
_REFERENCE_STRUCTS: dict[str, type[msgspec.Struct]] = {
    entity: msgspec.defstruct(entity.title(), _struct_fields(fields, True), gc=False)
    for entity, fields in REFERENCE_FIELDS.items()
}
_REFERENCE_DECODERS = {
    entity: msgspec.json.Decoder(struct) for entity, struct in _REFERENCE_STRUCTS.items()
}

_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.DOTALL)
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
"""Reasons are one line: line breaks inside quoted values are shown escaped."""


def _reason(exc: Exception) -> str:
    """msgspec's message as one line that starts with the field it is about."""
    message = (str(exc) or type(exc).__name__).translate(_LINE_BREAKS)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        if "UTF-8" in message:
            return "payload is not valid UTF-8"
        return f"invalid JSON: {message}"
    match = _AT.match(message)
    if match:
        what, where = match.group(1).replace("`", ""), match.group(2).lstrip(".")
        if where == "event_version" and what.startswith("Invalid enum value"):
            what = "unsupported version" + what.removeprefix("Invalid enum value")
        elif where == "event_type" and what.startswith("Invalid value"):
            what = "unknown event type" + what.removeprefix("Invalid value")
        return f"{where}: {what}"
    missing = re.match(r"Object missing required field `(.*)`", message)
    if missing:
        return f"{missing.group(1)}: missing"
    return message.replace("`", "")


_TOO_DEEP = "invalid JSON: nested too deeply to check"


def repeated_key(raw: bytes) -> str | None:
    """The first key that repeats in some object of ``raw`` (exact check, any depth)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return {}

    json.loads(raw, object_pairs_hook=pairs, parse_int=len, parse_float=len, parse_constant=len)
    return found[0] if found else None


def _money_slow(text: str, decimals: int) -> tuple[str | None, str | None]:
    """(canonical decimal text, None) or (None, why) for a money value that is not plain."""
    if text.startswith('"'):
        return None, "must be a JSON number, not a string"
    if text[:1] not in "-0123456789" or not text:
        return None, f"must be a JSON number, got {text[:20]}"
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None, f"not a number: {text[:40]}"
    if not value.is_finite():
        return None, f"not a finite number: {text[:40]}"
    if value < 0:
        return None, f"must not be negative: {text[:40]}"
    if value >= MONEY_LIMIT:
        return None, f"must be below 10^16: {text[:40]}"
    step = Decimal(1).scaleb(-decimals)
    exact = value.quantize(step)
    if exact != value:
        return None, f"more than {decimals} decimal places: {text[:40]}"
    return format(exact, "f"), None


class _Checks:
    """Reasons for the rows of one group of decoded messages; the first failing check wins."""

    def __init__(self, n: int) -> None:
        self.reasons: list[str | None] = [None] * n

    def fail_mask(self, mask: pa.Array, reason: str) -> None:
        """Fail every row where ``mask`` is true (or null) with ``reason``."""
        for index in pc.indices_nonzero(pc.fill_null(mask, True)).to_pylist():
            self.fail(index, reason)

    def fail(self, index: int, reason: str, *, first: bool = False) -> None:
        """Record why row ``index`` fails, unless an earlier check did (``first`` overrides)."""
        if self.reasons[index] is None or first:
            self.reasons[index] = reason


def _strings(values: list[Any], name: str, checks: _Checks) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):
        clean: list[str | None] = []
        for index, value in enumerate(values):
            try:
                value.encode("utf-8")
                clean.append(value)
            except UnicodeEncodeError:
                checks.fail(index, f"{name}: not valid Unicode (lone surrogate escape)")
                clean.append(None)
        return pa.array(clean, pa.string())


def _timestamps(values: pa.Array, name: str, checks: _Checks) -> pa.Array:
    shape = pc.match_substring_regex(values, _TS_RE)
    in_range = pc.and_(pc.greater_equal(values, TIMESTAMP_MIN), pc.less(values, TIMESTAMP_MAX))
    checks.fail_mask(
        pc.invert(shape), f"{name}: not an ISO-8601 UTC timestamp like 2026-01-15T10:00:00Z"
    )
    checks.fail_mask(
        pc.invert(in_range), f"{name}: outside 1970-01-01T00:00:00Z..2100-01-01T00:00:00Z"
    )
    ok = pc.fill_null(pc.and_(shape, in_range), False)
    candidates = pc.if_else(ok, values, pa.scalar(None, pa.string()))
    try:
        return pc.cast(candidates, ARROW_TYPES["timestamp"])
    except pa.ArrowInvalid:
        pass
    parsed: list[datetime | None] = []
    for index, text in enumerate(candidates.to_pylist()):
        if text is None:
            parsed.append(None)
            continue
        try:
            parsed.append(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            checks.fail(index, f"{name}: not a real date and time: {text}")
            parsed.append(None)
    return pa.array(parsed, ARROW_TYPES["timestamp"])


def _money(raws: list[Any], kind: Kind, name: str, checks: _Checks) -> pa.Array:
    decimals = _DECIMALS[kind]
    texts = pa.array([bytes(raw) for raw in raws], pa.binary()).cast(pa.string())
    plain = pc.match_substring_regex(texts, _PLAIN_MONEY % decimals)
    if not pc.all(plain).as_py():
        values = texts.to_pylist()
        for index in pc.indices_nonzero(pc.invert(plain)).to_pylist():
            canonical, why = _money_slow(values[index], decimals)
            values[index] = canonical
            if why:
                checks.fail(index, f"{name}: {why}")
        texts = pa.array(values, pa.string())
    return pc.cast(texts, ARROW_TYPES[kind])


def _column(spec: FieldSpec, prefix: str, values: list[Any], checks: _Checks) -> pa.Array:
    name = prefix + spec.name
    kind = spec.kind
    if kind in ("money", "unit_price"):
        return _money(values, kind, name, checks)
    if kind == "timestamp":
        return _timestamps(_strings(values, name, checks), name, checks)
    if kind in ("text", "currency", "country"):
        array = _strings(values, name, checks)
        if kind == "currency":
            known = pc.fill_null(pc.is_in(array, value_set=_ISO_ARRAY), False)
            for index in pc.indices_nonzero(pc.invert(known)).to_pylist():
                checks.fail(index, f"{name}: not an ISO 4217 currency code: {values[index]!r}")
        elif kind == "country":
            ok = pc.match_substring_regex(array, r"^[A-Z]{2}$")
            checks.fail_mask(pc.invert(ok), f"{name}: must be a 2-letter upper-case code")
        return array
    return pa.array(values, ARROW_TYPES[kind])


_ISO_ARRAY = pa.array(sorted(ISO_4217), pa.string())


def _items(baskets: Sequence[Any], checks: _Checks) -> tuple[pa.Array, pa.Array]:
    """The nested items column and, per order, the exact Σ quantity x unit_price."""
    n = len(baskets)
    lists: list[Any] = []
    offsets = [0]
    validity: list[bool] = []
    for items in baskets:
        if items is None or items is msgspec.UNSET:
            validity.append(False)
        else:
            lists.extend(items)
            validity.append(True)
        offsets.append(len(lists))
    children = _Checks(len(lists))
    parent = np.repeat(np.arange(n), np.diff(np.array(offsets)))
    columns = []
    for spec in ITEM_FIELDS:
        values = list(map(attrgetter(spec.name), lists))
        columns.append(_column(spec, "items[].", values, children))
    for index, reason in enumerate(children.reasons):
        if reason is not None:
            checks.fail(
                int(parent[index]),
                reason.replace("items[]", f"items[{index - offsets[parent[index]]}]"),
            )
    struct = pa.StructArray.from_arrays(columns, fields=list(ITEM_TYPE.value_type))
    mask = pa.array([not v for v in validity], pa.bool_())
    item_list = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct, mask=mask)
    sums = pa.array([Decimal(0)] * n, _WIDE)
    if lists:
        lines = pc.multiply(
            pc.cast(columns[2], pa.decimal256(24, 4)), pc.cast(columns[1], pa.decimal256(19, 0))
        )
        grouped = (
            pa.table({"parent": pa.array(parent), "line": lines})
            .group_by("parent")
            .aggregate([("line", "sum")])
            .sort_by("parent")
        )
        slot = np.full(n, len(grouped), dtype=np.int64)
        slot[grouped["parent"].to_numpy()] = np.arange(len(grouped))
        values = pa.concat_arrays(
            [*pc.cast(grouped["line_sum"], _WIDE).chunks, pa.array([Decimal(0)], _WIDE)]
        )
        sums = pc.take(values, pa.array(slot))
    return item_list, sums


def _check_totals(
    totals: pa.Array,
    sums: pa.Array,
    has_items: pa.Array,
    checks: _Checks,
    discount: pa.Array | None = None,
) -> None:
    """``order_total`` within a cent of ``sums`` (Σ items, less the discount where there is one)."""
    diff = pc.abs(pc.subtract(pc.cast(totals, _WIDE), sums))
    off = pc.and_(has_items, pc.greater(diff, pa.scalar(ORDER_TOTAL_TOLERANCE, _WIDE)))
    if pc.any(off).as_py():
        for index in pc.indices_nonzero(pc.fill_null(off, False)).to_pylist():
            exact = sums[index].as_py()
            less = discount[index].as_py() if discount is not None else None
            expected = "sum of items" if less is None else f"sum of items less discount {less}"
            checks.fail(
                index, f"order_total: {totals[index].as_py()} != {expected} {exact.normalize():f}"
            )


def _check_discount(
    discount: pa.Array, sums: pa.Array, has_items: pa.Array, checks: _Checks
) -> None:
    """A discount is at most the sum of the items it discounts (the total is never negative)."""
    over = pc.and_(has_items, pc.greater(pc.cast(discount, _WIDE), sums))
    for index in pc.indices_nonzero(pc.fill_null(over, False)).to_pylist():
        exact = sums[index].as_py()
        checks.fail(
            index,
            f"discount: {discount[index].as_py()} exceeds the sum of items {exact.normalize():f}",
        )


_CHANNEL_JSON = {b'"' + name.encode() + b'"': name for name in CHANNELS}


def _channel(raws: list[Any], name: str, checks: _Checks) -> pa.Array:
    """One of ``CHANNELS`` as a JSON string (escapes decoded on the slow path)."""
    out: list[str | None] = []
    for index, raw in enumerate(raws):
        text = bytes(raw)
        value = _CHANNEL_JSON.get(text)
        if value is None:
            try:
                decoded = msgspec.json.decode(text)
            except msgspec.DecodeError:
                decoded = None
            if isinstance(decoded, str) and decoded in CHANNELS:
                value = decoded
            else:
                shown = repr(text[:40].decode("utf-8", "backslashreplace"))  # one safe line
                checks.fail(index, f"{name}: not one of {', '.join(CHANNELS)}: {shown}")
        out.append(value)
    return pa.array(out, pa.string())


def _added_column(
    topic: str, spec: FieldSpec, columns: dict[str, pa.Array], raws: list[Any], checks: _Checks
) -> pa.Array:
    """A later version's field, typed where its ``(event_type, event_version)`` has it (and
    missing there is a failure), NULL everywhere else whatever the message carries."""
    wanted = pa.array([False] * len(raws))
    for (event_type, version), fields in VERSION_FIELDS.items():
        if EVENT_TYPE_TOPIC[event_type] == topic and spec.name in {f.name for f in fields}:
            wanted = pc.or_(
                wanted,
                pc.and_(
                    pc.equal(columns["event_type"], event_type),
                    pc.equal(columns["event_version"], version),
                ),
            )
    rows = pc.indices_nonzero(wanted).to_pylist()
    arrow_type = ARROW_TYPES[spec.kind]
    if not rows:
        return pa.nulls(len(raws), arrow_type)
    present: list[int] = []
    for index in rows:
        if raws[index] is msgspec.UNSET:
            checks.fail(index, f"{spec.name}: missing")
        else:
            present.append(index)
    sub = _Checks(len(present))
    picked = [raws[index] for index in present]
    if spec.kind == "channel":
        typed = _channel(picked, spec.name, sub)
    else:
        typed = _column(spec, "", picked, sub)
    for position, reason in enumerate(sub.reasons):
        if reason is not None:
            checks.fail(present[position], reason)
    slot: list[int | None] = [None] * len(raws)
    for position, index in enumerate(present):
        slot[index] = position
    return pc.take(typed, pa.array(slot, pa.int64()))


def _key_guard(
    raws: Sequence[bytes], expected_colons: np.ndarray[Any, Any], checks: _Checks
) -> None:
    """Dead-letter messages with a repeated key.

    Every key is followed by its own ``:``, so a message has at most as many keys as colons.
    When the colons equal the known keys present plus the colons inside the timestamps, the
    message has exactly its known keys, once each. Any other message (extra fields, colons in
    strings, repeats) gets the exact check.
    """
    colons = np.array([raw.count(b":") for raw in raws], dtype=np.int64)
    colons[np.array([b"\\" in raw for raw in raws], dtype=bool)] = -1  # escapes may hide some
    suspects = np.nonzero(colons != expected_colons)[0]
    for index in suspects.tolist():
        try:
            key = repeated_key(raws[index])
        except RecursionError:
            checks.fail(index, _TOO_DEEP, first=True)
            continue
        except ValueError:
            continue  # not UTF-8: the payload check that follows names that
        if key is not None:  # the root cause: any other finding read one of the two values
            checks.fail(
                index, f"repeated key {key!r}: readers disagree on which value wins", first=True
            )


@dataclass
class ValidatedEvents:
    """The verdicts on a batch of messages.

    ``events`` holds, per topic, the typed Bronze columns of the valid events, plus ``payload``
    (the message text, byte for byte) and ``_row`` (the message's index in the batch).
    ``dead_rows``/``dead_reasons`` list the rest, in input order.
    """

    size: int
    events: dict[str, pa.Table] = field(default_factory=dict)
    dead_rows: list[int] = field(default_factory=list)
    dead_reasons: list[str] = field(default_factory=list)

    @property
    def valid(self) -> int:
        """Number of valid events."""
        return self.size - len(self.dead_rows)

    def reasons(self) -> list[str | None]:
        """Per input message: None when valid, else the reason."""
        out: list[str | None] = [None] * self.size
        for row, reason in zip(self.dead_rows, self.dead_reasons, strict=True):
            out[row] = reason
        return out


_UTF8_CHUNK = 256


def _utf8(messages: Sequence[bytes]) -> tuple[pa.Array, dict[int, str]]:
    """The messages as a string array (rows that are not UTF-8 null) and those rows' reasons.

    One C pass when every message is UTF-8; otherwise only the chunks that fail it are
    checked message by message.
    """
    try:
        return pa.array(messages, pa.string()), {}  # checks UTF-8 as it copies
    except (pa.ArrowException, UnicodeDecodeError):
        pass
    binary = pa.array(messages, pa.binary())
    bad: dict[int, str] = {}
    for start in range(0, len(binary), _UTF8_CHUNK):
        try:
            binary.slice(start, _UTF8_CHUNK).cast(pa.string())
            continue
        except pa.ArrowInvalid:
            pass
        for index in range(start, min(start + _UTF8_CHUNK, len(messages))):
            reason = _utf8_reason(messages[index])
            if reason:
                bad[index] = reason
    mask = np.zeros(len(messages), dtype=bool)
    mask[list(bad)] = True
    clean = pc.if_else(pa.array(mask), pa.scalar(None, pa.binary()), binary)
    return clean.cast(pa.string()), bad


_ENVELOPE_COLONS = 4  # two timestamps, HH:MM:SS each


def validate_events(
    messages: Sequence[bytes], topics: Sequence[str | None] | None = None
) -> ValidatedEvents:
    """Check each message against the contract; group the valid ones by topic, typed.

    ``topics[i]``, when given and not None, is the Kafka topic message ``i`` arrived on: an
    event that belongs on another topic is dead-lettered.
    """
    result = ValidatedEvents(len(messages))
    dead: dict[int, str] = {}
    decode = _EVENT_DECODER.decode
    struct_topic = _STRUCT_TOPIC
    versions = _contract.EVENT_VERSIONS  # read now, not at import (see the module docstring)
    allowed = {struct: versions.get(event_type, ()) for struct, event_type in _STRUCT_TYPE.items()}
    grouped: dict[str, tuple[list[int], list[Any]]] = {t: ([], []) for t in TOPIC_EVENT_TYPES}
    for index, message in enumerate(messages):
        try:
            event = decode(message)
        except msgspec.DecodeError as exc:
            dead[index] = _utf8_reason(message) or _reason(exc)
            continue
        except RecursionError:
            dead[index] = _TOO_DEEP
            continue
        if event.event_version not in allowed[type(event)]:
            dead[index] = f"event_version: unsupported version {event.event_version}"
            continue
        topic = struct_topic[type(event)]
        if topics is not None and topics[index] is not None and topics[index] != topic:
            dead[index] = (
                f"event_type: {_STRUCT_TYPE[type(event)]} does not belong on topic {topics[index]}"
            )
            continue
        rows, events = grouped[topic]
        rows.append(index)
        events.append(event)
    for topic, (rows, events) in grouped.items():
        if not rows:
            continue
        table, reasons = _typed(topic, events, [messages[row] for row in rows])
        keep = [position for position, reason in enumerate(reasons) if reason is None]
        if len(keep) < len(rows):
            for position, reason in enumerate(reasons):
                if reason is not None:
                    dead[rows[position]] = reason
            if not keep:
                continue
            table = table.take(pa.array(keep, pa.int64()))
            rows = [rows[position] for position in keep]
        result.events[topic] = table.append_column("_row", pa.array(rows, pa.int64()))
    for row in sorted(dead):
        result.dead_rows.append(row)
        result.dead_reasons.append(dead[row])
    return result


def _typed(topic: str, events: list[Any], raws: list[bytes]) -> tuple[pa.Table, list[str | None]]:
    """The typed columns and payload of one topic's decoded events, and a reason per event."""
    checks = _Checks(len(events))
    columns: dict[str, pa.Array] = {}
    fields = event_fields(topic)
    # attrgetter over the list runs in C: no Python frame per event and field.
    values = {name: list(map(attrgetter(name), events)) for name in _STRUCT_FIELDS[topic]}
    expected = np.full(len(events), len(fields) + _ENVELOPE_COLONS, dtype=np.int64)
    for spec in fields:
        if spec.name == "event_type":
            columns["event_type"] = pa.array([_STRUCT_TYPE[type(e)] for e in events], pa.string())
        elif spec.kind == "items":
            items = values["items"]
            columns["items"], sums = _items(items, checks)
            present = np.fromiter(
                (0 if i is msgspec.UNSET else 1 + 3 * len(i or ()) for i in items),
                dtype=np.int64,
                count=len(items),
            )
            expected += present - 1
        elif not spec.required:
            raws_of = values[spec.name]
            columns[spec.name] = _added_column(topic, spec, columns, raws_of, checks)
            absent = raws_of.count(msgspec.UNSET)  # list.count runs in C
            if absent == len(raws_of):
                expected -= 1
            elif absent:
                expected -= np.fromiter(
                    (raw is msgspec.UNSET for raw in raws_of), dtype=np.int64, count=len(raws_of)
                )
        else:
            columns[spec.name] = _column(spec, "", values[spec.name], checks)
    if "items" in columns:
        has_items = pc.is_valid(columns["items"])
        discount = columns.get("discount")
        if discount is not None and discount.null_count < len(discount):
            _check_discount(discount, sums, has_items, checks)
            sums = pc.subtract(sums, pc.fill_null(pc.cast(discount, _WIDE), Decimal(0)))
        _check_totals(columns["order_total"], sums, has_items, checks, discount)
    _key_guard(raws, expected, checks)
    columns["payload"] = _payloads(raws, checks)
    return pa.table(columns), checks.reasons


def _utf8_reason(message: bytes) -> str | None:
    """Why ``message`` is not UTF-8, or None (asked only of messages that failed to decode)."""
    try:
        message.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"payload is not valid UTF-8 (byte {exc.start})"
    return None


def _payloads(raws: list[bytes], checks: _Checks) -> pa.Array:
    """The messages as text. msgspec checks UTF-8 only in the fields it reads, so the whole
    message is checked here (one C pass; chunk by chunk only when some message fails)."""
    payloads, bad = _utf8(raws)
    for index, reason in bad.items():
        checks.fail(index, reason, first=True)
    return payloads


def check_event(raw: bytes, topic: str | None = None) -> str | None:
    """The contract's verdict on one message: None when valid, else the reason."""
    reasons = validate_events([raw], [topic]).dead_reasons
    return reasons[0] if reasons else None


@dataclass
class ValidatedRecords:
    """Verdicts on reference records (customers or products): typed rows and dead letters."""

    size: int
    rows: pa.Table
    dead_rows: list[int] = field(default_factory=list)
    dead_reasons: list[str] = field(default_factory=list)


def validate_records(entity: str, records: Sequence[bytes]) -> ValidatedRecords:
    """Check reference records of ``entity`` (customers or products) against the contract."""
    fields = REFERENCE_FIELDS[entity]
    decode = _REFERENCE_DECODERS[entity].decode
    dead: dict[int, str] = {}
    rows: list[int] = []
    decoded: list[Any] = []
    for index, record in enumerate(records):
        try:
            decoded.append(decode(record))
            rows.append(index)
        except msgspec.DecodeError as exc:
            dead[index] = _utf8_reason(record) or _reason(exc)
        except RecursionError:
            dead[index] = _TOO_DEEP
    checks = _Checks(len(decoded))
    columns = {
        spec.name: _column(spec, "", list(map(attrgetter(spec.name), decoded)), checks)
        for spec in fields
    }
    raws = [records[i] for i in rows]
    colons = sum(2 for spec in fields if spec.kind == "timestamp")
    _key_guard(raws, np.full(len(decoded), len(fields) + colons, dtype=np.int64), checks)
    columns["payload"] = _payloads(raws, checks)
    table = pa.table(columns).append_column("_row", pa.array(rows, pa.int64()))
    keep = [i for i, reason in enumerate(checks.reasons) if reason is None]
    for i, reason in enumerate(checks.reasons):
        if reason is not None:
            dead[rows[i]] = reason
    result = ValidatedRecords(len(records), table.take(pa.array(keep, pa.int64())))
    for index in sorted(dead):
        result.dead_rows.append(index)
        result.dead_reasons.append(dead[index])
    return result
