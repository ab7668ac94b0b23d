"""The event contract, written once: every field of every message and the kind of value it holds.

This table is the single definition of a valid message (docs/metrics.md, "What a valid event is").
Everything else is derived from it, so nothing can drift:

- the validator (:mod:`retail_pipeline.events.validator`) builds its msgspec decoders and its
  vectorised checks from it;
- the JSON Schema files under ``schemas/`` (``retail-pipeline schemas``);
- the typed Bronze columns (:func:`bronze_columns`, used by the warehouse DDL);
- the accepted values dbt tests against (``dbt/`` vars are checked against it in the tests).

Rules per kind of value:

- ``text``: a non-empty JSON string.
- ``timestamp``: ISO-8601 UTC with ``Z`` (``2026-01-15T10:00:00.123Z``, 0-6 fraction digits),
  a real date and time, from 1970-01-01 (inclusive) to 2100-01-01 (exclusive).
- ``money`` (``order_total``, ``amount``, ``price``): a finite JSON number, ≥ 0, below 10^16,
  with at most 2 decimal places (as a value: ``10.50`` and ``1E+2`` are fine, ``10.001`` is not).
  Read as decimal text, never through a binary float.
- ``unit_price``: the same with at most 4 decimal places.
- ``quantity``: a JSON integer from 1 to 10^9.
- ``currency``: an ISO 4217 code (three upper-case letters from the published list).
- ``country``: two upper-case letters.
- ``version``: an integer this contract supports for the event type (``EVENT_VERSIONS``).
- ``channel``: one of ``CHANNELS``.
- ``bool``: ``true`` or ``false``.
- ``items``: a JSON array of objects with ``product_id``, ``quantity`` and ``unit_price``.

The message itself must be a strict RFC 8259 JSON object in UTF-8 with no repeated key at any
depth (readers disagree on which of two values wins). Unknown extra fields are allowed, so
producers can add fields before consumers know them. When an order carries ``items``, its
``order_total`` equals Σ quantity x unit_price within one cent (docs/metrics.md: the exact sum
rounded to cents; a cent of slack lets producers round either way).

Versions are per event type (``EVENT_VERSIONS``). A later version adds fields, listed in
``VERSION_FIELDS`` keyed by ``(event_type, event_version)``; version 1 never changes, since
Bronze keeps old messages forever. ``order_created`` version 2 adds ``channel`` and ``discount``:
its ``order_total`` equals Σ quantity x unit_price - discount within one cent, and the discount
is at most the sum of the items. A version-1 message may carry keys named like a later version's
fields (unknown extra fields are allowed); they mean nothing at version 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

Kind = Literal[
    "text",
    "timestamp",
    "money",
    "unit_price",
    "quantity",
    "currency",
    "country",
    "version",
    "bool",
    "items",
    "channel",
]

EVENT_VERSIONS: dict[str, frozenset[int]] = {
    "order_created": frozenset({1, 2}),
    "order_updated": frozenset({1}),
    "order_canceled": frozenset({1}),
    "payment_authorized": frozenset({1}),
    "payment_captured": frozenset({1}),
    "payment_failed": frozenset({1}),
    "payment_refunded": frozenset({1}),
    "shipment_created": frozenset({1}),
    "shipment_dispatched": frozenset({1}),
    "shipment_delivered": frozenset({1}),
    "shipment_failed": frozenset({1}),
}
"""Versions the loaders accept, per event type. Adding a version: see docs/event-contract.md.

The validator reads this mapping on every call, so replacing one entry (a test emulating the
previous release: ``order_created`` -> ``{1}``) changes what is accepted at once."""

SUPPORTED_EVENT_VERSIONS: frozenset[int] = frozenset().union(*EVENT_VERSIONS.values())
"""Every version some event type accepts (the decoder's range; the per-type check follows)."""

CHANNELS: tuple[str, ...] = ("web", "mobile_app", "store", "marketplace")
"""Where an order was placed (``order_created`` version 2, field ``channel``)."""
UNKNOWN_CHANNEL = "unknown"
"""Silver's channel of an order created at version 1, which does not say."""

REPORTING_CURRENCY = "USD"
"""Money answers are in this currency; events in others are valid but not added to revenue."""

MONEY_LIMIT = Decimal(10) ** 16
"""Money and unit prices are below this (exclusive)."""
MONEY_DECIMALS = 2
UNIT_PRICE_DECIMALS = 4
MIN_QUANTITY = 1
MAX_QUANTITY = 1_000_000_000
ORDER_TOTAL_TOLERANCE = Decimal("0.01")
"""``order_total`` may differ from the exact sum of its items by at most one cent."""
TIMESTAMP_MIN = "1970-01-01T00:00:00"
TIMESTAMP_MAX = "2100-01-01T00:00:00"
"""Timestamps lie in [TIMESTAMP_MIN, TIMESTAMP_MAX), compared as text on the fixed format."""
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"

ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK
    JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK
    MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB
    TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG
    XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 - a list literal of 180 codes would be far harder to read
)
"""ISO 4217 alphabetic codes (current, fund and X codes)."""


@dataclass(frozen=True)
class FieldSpec:
    """One field of a message: its name, the kind of value, and whether it must be present."""

    name: str
    kind: Kind
    required: bool = True
    nullable: bool = False
    description: str = ""


ENVELOPE: tuple[FieldSpec, ...] = (
    FieldSpec("event_id", "text", description="Unique id of the event; duplicates share it"),
    FieldSpec("event_type", "text", description="What happened; decides the topic"),
    FieldSpec("event_version", "version", description="Contract version of the payload"),
    FieldSpec("event_timestamp", "timestamp", description="When it happened (UTC)"),
    FieldSpec("produced_at", "timestamp", description="When the producer sent it (UTC)"),
    FieldSpec("source_system", "text", description="The system that produced it"),
)

ITEM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("product_id", "text"),
    FieldSpec("quantity", "quantity"),
    FieldSpec("unit_price", "unit_price"),
)

TOPIC_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "orders": (
        FieldSpec("order_id", "text"),
        FieldSpec("customer_id", "text"),
        FieldSpec("order_total", "money", description="Σ quantity x unit_price, in cents"),
        FieldSpec("currency", "currency"),
        FieldSpec("order_status", "text"),
        FieldSpec("items", "items", required=False, nullable=True, description="The basket"),
    ),
    "payments": (
        FieldSpec("payment_id", "text"),
        FieldSpec("order_id", "text"),
        FieldSpec("amount", "money"),
        FieldSpec("currency", "currency"),
        FieldSpec("payment_method", "text"),
        FieldSpec("payment_status", "text"),
    ),
    "shipments": (
        FieldSpec("shipment_id", "text"),
        FieldSpec("order_id", "text"),
        FieldSpec("carrier", "text"),
        FieldSpec("shipment_status", "text"),
    ),
}

TOPIC_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "orders": ("order_created", "order_updated", "order_canceled"),
    "payments": (
        "payment_authorized",
        "payment_captured",
        "payment_failed",
        "payment_refunded",
    ),
    "shipments": (
        "shipment_created",
        "shipment_dispatched",
        "shipment_delivered",
        "shipment_failed",
    ),
}
EVENT_TYPE_TOPIC: dict[str, str] = {
    event_type: topic for topic, types in TOPIC_EVENT_TYPES.items() for event_type in types
}
TOPICS: tuple[str, ...] = tuple(TOPIC_EVENT_TYPES)
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_TYPE_TOPIC)

ITEMS_REQUIRED: frozenset[str] = frozenset({"order_created"})
"""Event types that must carry a non-null ``items`` array."""

VERSION_FIELDS: dict[tuple[str, int], tuple[FieldSpec, ...]] = {
    ("order_created", 2): (
        FieldSpec("channel", "channel", description="Where the order was placed"),
        FieldSpec(
            "discount",
            "money",
            description="Order-level discount: order_total = Σ quantity x unit_price - discount",
        ),
    ),
}
"""Fields a later version adds, by ``(event_type, event_version)``; all required there."""

EVENT_DESCRIPTIONS: dict[str, str] = {
    "order_created": "An order was placed; carries its basket.",
    "order_updated": "An order changed; carries items when the basket changed.",
    "order_canceled": "An order was canceled (before or after payment).",
    "payment_authorized": "A payment was authorized (funds reserved, not yet taken).",
    "payment_captured": "Money was taken: counts as revenue on its event date.",
    "payment_failed": "A payment attempt failed; the customer may retry.",
    "payment_refunded": "Money was returned: counts against revenue on its event date.",
    "shipment_created": "A shipment was created for an order.",
    "shipment_dispatched": "The carrier picked the parcel up: the order is shipped.",
    "shipment_delivered": "The parcel reached the customer.",
    "shipment_failed": "Delivery failed; the shipment may be dispatched again.",
}

REFERENCE_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "customers": (
        FieldSpec("customer_id", "text"),
        FieldSpec("name", "text"),
        FieldSpec("email", "text"),
        FieldSpec("country", "country"),
        FieldSpec("created_at", "timestamp"),
    ),
    "products": (
        FieldSpec("product_id", "text"),
        FieldSpec("product_name", "text"),
        FieldSpec("category", "text"),
        FieldSpec("price", "money"),
        FieldSpec("active", "bool"),
    ),
}
REFERENCE_KEYS: dict[str, str] = {"customers": "customer_id", "products": "product_id"}


def added_fields(topic: str) -> tuple[FieldSpec, ...]:
    """The fields later versions add to events on ``topic``, once each, in table order."""
    seen: dict[str, FieldSpec] = {}
    for (event_type, _), fields in VERSION_FIELDS.items():
        if EVENT_TYPE_TOPIC[event_type] == topic:
            for spec in fields:
                seen.setdefault(spec.name, spec)
    return tuple(seen.values())


def event_fields(topic: str) -> tuple[FieldSpec, ...]:
    """Every typed column of an event on ``topic``, any version: the envelope, the topic's own
    fields, then those later versions add (optional and nullable here: older versions and other
    event types of the topic do not carry them; :func:`version_fields` says where they are
    required)."""
    later = tuple(replace(spec, required=False, nullable=True) for spec in added_fields(topic))
    return ENVELOPE + TOPIC_FIELDS[topic] + later


def version_fields(event_type: str, version: int) -> tuple[FieldSpec, ...]:
    """The fields ``event_type`` at ``version`` adds to version 1 (none for version 1)."""
    return VERSION_FIELDS.get((event_type, version), ())


# Bronze column types, per kind (DuckDB and Snowflake spell these the same way, except items).
SQL_TYPES: dict[Kind, str] = {
    "text": "varchar",
    "timestamp": "timestamptz",
    "money": "decimal(18, 2)",
    "unit_price": "decimal(20, 4)",
    "quantity": "bigint",
    "currency": "varchar",
    "country": "varchar",
    "version": "integer",
    "bool": "boolean",
    "items": "struct(product_id varchar, quantity bigint, unit_price decimal(20, 4))[]",
    "channel": "varchar",
}


def bronze_columns(fields: tuple[FieldSpec, ...]) -> list[tuple[str, str, bool]]:
    """(column, SQL type, not null) for the typed columns validation produces."""
    return [(f.name, SQL_TYPES[f.kind], f.required and not f.nullable) for f in fields]
