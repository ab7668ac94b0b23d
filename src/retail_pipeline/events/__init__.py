"""Event contract and simulator."""

from retail_pipeline.events.contract import (
    EVENT_TYPE_TOPIC,
    TOPIC_EVENT_TYPES,
    TOPICS,
    ContractError,
    Customer,
    Product,
    parse_event,
)

__all__ = [
    "EVENT_TYPE_TOPIC",
    "TOPICS",
    "TOPIC_EVENT_TYPES",
    "ContractError",
    "Customer",
    "Product",
    "parse_event",
]
