"""The event contract: typed models for every event and reference record.

These pydantic models are the single definition of what a valid message is. The JSON Schema
files under ``schemas/`` are generated from them (``retail-pipeline schemas``), and the fast
SQL validator used by the loaders (``retail_pipeline.ingestion.validate``) is checked against
them by a differential property test.

Rules (METRICS.md): required envelope fields; ISO-8601 UTC timestamps (``Z`` or ``+00:00``);
an ``event_type`` known for its topic; a supported ``event_version``; non-negative amounts and
quantities; 3-letter upper-case currency codes; ``order_total`` equal to the sum of
``quantity * unit_price`` over ``items`` within one cent. Unknown extra fields are allowed so
that producers can add fields before consumers know them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SUPPORTED_EVENT_VERSIONS: frozenset[int] = frozenset({1})
"""Versions the loaders accept. Adding a version: see docs/event-contract.md."""

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

UTC_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|\+00:00)$"
)
_UTC_TIMESTAMP_RE = re.compile(UTC_TIMESTAMP_PATTERN)
CURRENCY_PATTERN = r"^[A-Z]{3}$"
MAX_QUANTITY = 1_000_000
ORDER_TOTAL_TOLERANCE = 0.01
"""``order_total`` may differ from the sum of its items by at most one cent."""


def _utc_timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not _UTC_TIMESTAMP_RE.fullmatch(value):
        raise ValueError("must be an ISO-8601 UTC timestamp like 2026-01-15T10:00:00Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(_utc_timestamp),
    Field(json_schema_extra={"type": "string", "pattern": UTC_TIMESTAMP_PATTERN}),
]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class EventEnvelope(_Model):
    """Fields every event carries."""

    event_id: NonEmptyStr
    event_type: str
    event_version: StrictInt
    event_timestamp: UtcTimestamp
    produced_at: UtcTimestamp
    source_system: NonEmptyStr

    @model_validator(mode="after")
    def _supported_version(self) -> EventEnvelope:
        if self.event_version not in SUPPORTED_EVENT_VERSIONS:
            raise ValueError(f"unsupported event_version {self.event_version}")
        return self


class OrderItem(_Model):
    """One line of an order's basket."""

    product_id: NonEmptyStr
    quantity: Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]
    unit_price: Money


class _OrderEvent(EventEnvelope):
    order_id: NonEmptyStr
    customer_id: NonEmptyStr
    order_total: Money
    currency: Currency
    order_status: NonEmptyStr
    items: list[OrderItem] | None = None

    @model_validator(mode="after")
    def _total_matches_items(self) -> _OrderEvent:
        if self.items is not None:
            expected = sum(item.quantity * item.unit_price for item in self.items)
            if abs(expected - self.order_total) > ORDER_TOTAL_TOLERANCE + 1e-9:
                raise ValueError(f"order_total {self.order_total} != sum of items {expected:.2f}")
        return self


class OrderCreated(_OrderEvent):
    """An order was placed; carries its basket."""

    event_type: Literal["order_created"]
    items: list[OrderItem]


class OrderUpdated(_OrderEvent):
    """An order changed; carries ``items`` when the basket changed."""

    event_type: Literal["order_updated"]


class OrderCanceled(_OrderEvent):
    """An order was canceled (before or after payment)."""

    event_type: Literal["order_canceled"]


class _PaymentEvent(EventEnvelope):
    payment_id: NonEmptyStr
    order_id: NonEmptyStr
    amount: Money
    currency: Currency
    payment_method: NonEmptyStr
    payment_status: NonEmptyStr


class PaymentAuthorized(_PaymentEvent):
    """A payment was authorized (funds reserved, not yet taken)."""

    event_type: Literal["payment_authorized"]


class PaymentCaptured(_PaymentEvent):
    """Money was taken: counts as revenue on its event date."""

    event_type: Literal["payment_captured"]


class PaymentFailed(_PaymentEvent):
    """A payment attempt failed; the customer may retry."""

    event_type: Literal["payment_failed"]


class PaymentRefunded(_PaymentEvent):
    """Money was returned: counts against revenue on its event date."""

    event_type: Literal["payment_refunded"]


class _ShipmentEvent(EventEnvelope):
    shipment_id: NonEmptyStr
    order_id: NonEmptyStr
    carrier: NonEmptyStr
    shipment_status: NonEmptyStr


class ShipmentCreated(_ShipmentEvent):
    """A shipment was created for an order."""

    event_type: Literal["shipment_created"]


class ShipmentDispatched(_ShipmentEvent):
    """The carrier picked the parcel up: the order is shipped."""

    event_type: Literal["shipment_dispatched"]


class ShipmentDelivered(_ShipmentEvent):
    """The parcel reached the customer."""

    event_type: Literal["shipment_delivered"]


class ShipmentFailed(_ShipmentEvent):
    """Delivery failed; the shipment may be dispatched again."""

    event_type: Literal["shipment_failed"]


OrderEvent = Annotated[
    OrderCreated | OrderUpdated | OrderCanceled, Field(discriminator="event_type")
]
PaymentEvent = Annotated[
    PaymentAuthorized | PaymentCaptured | PaymentFailed | PaymentRefunded,
    Field(discriminator="event_type"),
]
ShipmentEvent = Annotated[
    ShipmentCreated | ShipmentDispatched | ShipmentDelivered | ShipmentFailed,
    Field(discriminator="event_type"),
]
Event = Annotated[
    OrderCreated
    | OrderUpdated
    | OrderCanceled
    | PaymentAuthorized
    | PaymentCaptured
    | PaymentFailed
    | PaymentRefunded
    | ShipmentCreated
    | ShipmentDispatched
    | ShipmentDelivered
    | ShipmentFailed,
    Field(discriminator="event_type"),
]

EVENT_MODELS: dict[str, type[EventEnvelope]] = {
    "order_created": OrderCreated,
    "order_updated": OrderUpdated,
    "order_canceled": OrderCanceled,
    "payment_authorized": PaymentAuthorized,
    "payment_captured": PaymentCaptured,
    "payment_failed": PaymentFailed,
    "payment_refunded": PaymentRefunded,
    "shipment_created": ShipmentCreated,
    "shipment_dispatched": ShipmentDispatched,
    "shipment_delivered": ShipmentDelivered,
    "shipment_failed": ShipmentFailed,
}


class Customer(_Model):
    """A customer record from the reference snapshot."""

    customer_id: NonEmptyStr
    name: NonEmptyStr
    email: NonEmptyStr
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    created_at: UtcTimestamp


class Product(_Model):
    """A product record from the reference snapshot."""

    product_id: NonEmptyStr
    product_name: NonEmptyStr
    category: NonEmptyStr
    price: Money
    active: StrictBool


_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


class ContractError(ValueError):
    """A message that breaks the contract; ``reason`` is one line for the dead-letter table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


def parse_event(raw: bytes | str, topic: str | None = None) -> EventEnvelope:
    """Validate one raw message against the contract and return its typed model.

    ``topic`` (when the message came from a Kafka topic) must be the topic its
    ``event_type`` belongs to. Raises :class:`ContractError` with a one-line reason.
    """
    try:
        event: EventEnvelope = _EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise ContractError(_first_error(exc)) from None
    if topic is not None and EVENT_TYPE_TOPIC[event.event_type] != topic:
        raise ContractError(f"event_type {event.event_type} does not belong on topic {topic}")
    return event


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of any event, discriminated by ``event_type``."""
    return _EVENT_ADAPTER.json_schema()
