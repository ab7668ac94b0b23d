"""An independent, deliberately plain statement of the event contract (METRICS.md).

``reference_reason(raw, topic)`` returns ``None`` for a valid event and otherwise a one-line
reason naming the offending field (or the JSON problem). It uses only the standard library's
``json``, ``decimal``, ``re`` and ``datetime`` and shares no code with the production validator,
so the property tests in ``test_contract.py`` can compare the two.

The rules, as written in METRICS.md "What a valid event is" and the event table:

- strict RFC 8259 JSON, UTF-8, a top-level object, no repeated key at any nesting level, no
  ``NaN``/``Infinity`` constants; strings must be Unicode text (a lone surrogate escape such
  as ``"\\ud800"`` cannot be stored as UTF-8, so it is rejected);
- the envelope: ``event_id``, ``event_type``, ``event_version`` (an integer the event type
  supports: 1 for every type, also 2 for ``order_created``), ``event_timestamp``,
  ``produced_at``, ``source_system``;
- ``order_created`` version 2 also has ``channel`` (one of web, mobile_app, store, marketplace)
  and ``discount`` (money, at most the items' sum), and ``order_total`` is the items' sum less
  the discount within 0.01; at version 1 keys named ``channel``/``discount`` are unknown extra
  fields, whatever they hold;
- the entity fields of the event's topic; an ``event_type`` of another topic than the one the
  message arrived on is invalid;
- money (``order_total``, ``amount``): a finite JSON number >= 0, below 10^16, with at most two
  decimal places as a value; ``unit_price`` the same with at most four; ``quantity`` an integer
  from 1 to 10^9; ``|order_total - sum(quantity * unit_price)| <= 0.01`` exactly;
- timestamps: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` naming a real instant in [1970, 2100);
- ``currency``: an upper-case ISO 4217 code.

Unknown extra fields are allowed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, localcontext
from typing import Any

TOPIC_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "orders": ("order_created", "order_updated", "order_canceled"),
    "payments": ("payment_authorized", "payment_captured", "payment_failed", "payment_refunded"),
    "shipments": (
        "shipment_created",
        "shipment_dispatched",
        "shipment_delivered",
        "shipment_failed",
    ),
}
EVENT_TYPE_TOPIC: dict[str, str] = {t: topic for topic, ts in TOPIC_EVENT_TYPES.items() for t in ts}

ENVELOPE_STRING_FIELDS = ("event_id", "source_system")
TIMESTAMP_FIELDS = ("event_timestamp", "produced_at")
ORDER_STRING_FIELDS = ("order_id", "customer_id", "order_status")
PAYMENT_STRING_FIELDS = ("payment_id", "order_id", "payment_method", "payment_status")
SHIPMENT_STRING_FIELDS = ("shipment_id", "order_id", "carrier", "shipment_status")

# Versions per event type; a test emulating an older release may replace an entry.
VERSIONS: dict[str, frozenset[int]] = {t: frozenset({1}) for t in EVENT_TYPE_TOPIC}
VERSIONS["order_created"] = frozenset({1, 2})
ORDER_CHANNELS = frozenset({"web", "mobile_app", "store", "marketplace"})

MONEY_LIMIT = Decimal(10) ** 16
CENT = Decimal("0.01")
TEN_THOUSANDTH = Decimal("0.0001")
ORDER_TOTAL_TOLERANCE = Decimal("0.01")
MAX_QUANTITY = 10**9

# Active ISO 4217 codes (List One, 2025) including the funds codes (BOV, CHE, CHW, CLF, COU,
# MXV, USN, UYI, UYW) and the X-codes (precious metals, SDR, bond units, testing, "no
# currency"). Codes withdrawn before 2025 (HRK, SLL, CUC, VEF, MRO, STD, ZWL, ...) are not here.
ISO_4217_CODES: frozenset[str] = frozenset(
    [
        "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
        "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
        "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE",
        "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
        "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
        "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD",
        "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK",
        "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
        "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
        "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD",
        "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD",
        "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV",
        "WST", "XAD", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF",
        "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG",
    ]
)  # fmt: skip

# ASCII only ([0-9], not \d which also matches other scripts' digits), matched in full
# (``$`` alone would accept a trailing newline).
_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z", re.ASCII
)
_TIMESTAMP_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIMESTAMP_END = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_CURRENCY_RE = re.compile(r"[A-Z]{3}", re.ASCII)


class Invalid(Exception):
    """Raised with the reason text."""


class _RepeatedKey(ValueError):
    pass


def strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RepeatedKey(key)
        result[key] = value
    return result


class OutOfRangeNumber:
    """A JSON number too large (or too precise) even for ``int``/``Decimal``, kept as its text.

    It is valid JSON (RFC 8259 sets no limit), so it may sit in an unknown extra field; as a
    known number field it is out of range.
    """

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> Decimal | OutOfRangeNumber:
    try:
        return Decimal(text)
    except ArithmeticError:  # e.g. 1e9999999999999999999: exponent beyond Decimal's range
        return OutOfRangeNumber(text)


def _parse_int(text: str) -> int | OutOfRangeNumber:
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        return OutOfRangeNumber(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _check_unicode(value: Any, path: str) -> None:
    """Every string (keys included) must be Unicode text: no lone surrogates."""
    if isinstance(value, str):
        if _has_surrogate(value):
            raise Invalid(f"{path or 'value'}: lone surrogate in string")
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if _has_surrogate(key):
                raise Invalid(f"{path or 'object'}: lone surrogate in a key")
            _check_unicode(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_unicode(item, f"{path}[{i}]")


def parse_strict(raw: bytes) -> dict[str, Any]:
    """Strict RFC 8259 parse of one UTF-8 message into a dict (numbers as int / Decimal)."""
    try:
        text = raw.decode("utf-8")  # strict: no surrogatepass, no BOM stripping
    except UnicodeDecodeError as exc:
        raise Invalid(f"invalid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=strict_pairs,
            parse_float=_parse_float,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
        )
    except _RepeatedKey as exc:
        raise Invalid(f"repeated key {exc.args[0]!r}") from None
    except json.JSONDecodeError as exc:
        raise Invalid(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # NaN/Infinity, nested too deep
        raise Invalid(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid(f"invalid JSON: top-level value is a {type(value).__name__}, not an object")
    _check_unicode(value, "")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(obj: dict[str, Any], field: str, path: str) -> Any:
    if field not in obj:
        raise Invalid(f"{path}{field}: missing")
    return obj[field]


def check_non_empty_string(obj: dict[str, Any], field: str, path: str = "") -> str:
    value = _require(obj, field, path)
    if not isinstance(value, str):
        raise Invalid(f"{path}{field}: expected a string, got {_kind(value)}")
    if value == "":
        raise Invalid(f"{path}{field}: must not be empty")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, OutOfRangeNumber):
        return "an out-of-range number"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def check_decimal_amount(
    obj: dict[str, Any], field: str, quantum: Decimal, places: int, path: str = ""
) -> Decimal:
    """A JSON number, finite, >= 0, < 10^16, with at most ``places`` decimals as a value."""
    value = _require(obj, field, path)
    name = f"{path}{field}"
    if isinstance(value, OutOfRangeNumber):
        raise Invalid(f"{name}: number out of range: {value.text[:40]}")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise Invalid(f"{name}: expected a number, got {_kind(value)}")
    number = Decimal(value)
    if not number.is_finite():
        raise Invalid(f"{name}: must be finite")
    if number < 0:
        raise Invalid(f"{name}: must be >= 0, got {value}")
    if number >= MONEY_LIMIT:
        raise Invalid(f"{name}: must be below 10^16, got {value}")
    with localcontext(prec=60):
        if number.quantize(quantum) != number:
            raise Invalid(f"{name}: at most {places} decimal places, got {value}")
    return number


def check_timestamp(obj: dict[str, Any], field: str) -> dt.datetime:
    value = _require(obj, field, "")
    if not isinstance(value, str):
        raise Invalid(f"{field}: expected an ISO-8601 UTC string, got {_kind(value)}")
    if not _TIMESTAMP_RE.fullmatch(value):
        raise Invalid(f"{field}: not an ISO-8601 timestamp like 2026-01-15T10:00:00Z: {value!r}")
    try:
        moment = dt.datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError as exc:
        raise Invalid(f"{field}: not a real date and time: {value!r} ({exc})") from None
    if not (_TIMESTAMP_MIN <= moment < _TIMESTAMP_END):
        raise Invalid(f"{field}: outside [1970-01-01, 2100-01-01): {value!r}")
    return moment


def check_currency(obj: dict[str, Any]) -> str:
    value = _require(obj, "currency", "")
    if not isinstance(value, str):
        raise Invalid(f"currency: expected a string, got {_kind(value)}")
    if not _CURRENCY_RE.fullmatch(value):
        raise Invalid(f"currency: not a 3-letter upper-case code: {value!r}")
    if value not in ISO_4217_CODES:
        raise Invalid(f"currency: not an ISO 4217 code: {value!r}")
    return value


def check_envelope(event: dict[str, Any], topic: str | None) -> str:
    check_non_empty_string(event, "event_id")
    event_type = _require(event, "event_type", "")
    if not isinstance(event_type, str):
        raise Invalid(f"event_type: expected a string, got {_kind(event_type)}")
    if event_type not in EVENT_TYPE_TOPIC:
        raise Invalid(f"event_type: unknown event type {event_type!r}")
    version = _require(event, "event_version", "")
    if not _is_int(version):
        raise Invalid(f"event_version: expected the integer 1, got {_kind(version)} {version!r}")
    if version not in VERSIONS[event_type]:
        raise Invalid(f"event_version: unsupported version {version}")
    for field in TIMESTAMP_FIELDS:
        check_timestamp(event, field)
    check_non_empty_string(event, "source_system")
    if topic is not None and EVENT_TYPE_TOPIC[event_type] != topic:
        raise Invalid(f"event_type: {event_type!r} does not belong on topic {topic!r}")
    return event_type


def check_items(items: Any) -> Decimal:
    """Validate the basket and return the exact sum of quantity * unit_price."""
    if not isinstance(items, list):
        raise Invalid(f"items: expected an array, got {_kind(items)}")
    total = Decimal(0)
    for i, item in enumerate(items):
        path = f"items[{i}]."
        if not isinstance(item, dict):
            raise Invalid(f"items[{i}]: expected an object, got {_kind(item)}")
        check_non_empty_string(item, "product_id", path)
        quantity = _require(item, "quantity", path)
        if not _is_int(quantity):
            raise Invalid(f"{path}quantity: expected an integer, got {_kind(quantity)}")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise Invalid(f"{path}quantity: must be 1..10^9, got {quantity}")
        unit_price = check_decimal_amount(item, "unit_price", TEN_THOUSANDTH, 4, path)
        with localcontext(prec=200):
            total += quantity * unit_price
    return total


def check_order(event: dict[str, Any], event_type: str) -> None:
    for field in ORDER_STRING_FIELDS:
        check_non_empty_string(event, field)
    order_total = check_decimal_amount(event, "order_total", CENT, 2)
    check_currency(event)
    if event_type == "order_created":
        items = _require(event, "items", "")
    else:
        items = event.get("items")
        if items is None:
            return
    items_sum = check_items(items)
    if event_type == "order_created" and event["event_version"] == 2:
        channel = _require(event, "channel", "")
        if not isinstance(channel, str) or channel not in ORDER_CHANNELS:
            raise Invalid(f"channel: not a known channel: {channel!r}")
        discount = check_decimal_amount(event, "discount", CENT, 2)
        if discount > items_sum:
            raise Invalid(f"discount: {discount} is more than the items' sum {items_sum}")
        with localcontext(prec=200):
            items_sum -= discount
    with localcontext(prec=200):
        if abs(order_total - items_sum) > ORDER_TOTAL_TOLERANCE:
            raise Invalid(
                f"order_total: {order_total} differs from the items' sum {items_sum} by more "
                "than 0.01"
            )


def check_payment(event: dict[str, Any]) -> None:
    for field in PAYMENT_STRING_FIELDS:
        check_non_empty_string(event, field)
    check_decimal_amount(event, "amount", CENT, 2)
    check_currency(event)


def check_shipment(event: dict[str, Any]) -> None:
    for field in SHIPMENT_STRING_FIELDS:
        check_non_empty_string(event, field)


def reference_reason(raw: bytes, topic: str | None = None) -> str | None:
    """``None`` if ``raw`` is a valid event (arriving on ``topic``), else the first reason."""
    try:
        event = parse_strict(raw)
        event_type = check_envelope(event, topic)
        family = EVENT_TYPE_TOPIC[event_type]
        if family == "orders":
            check_order(event, event_type)
        elif family == "payments":
            check_payment(event)
        else:
            check_shipment(event)
    except Invalid as exc:
        return str(exc)
    return None
