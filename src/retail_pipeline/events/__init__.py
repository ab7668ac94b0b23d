"""Event contract, its validator and the simulator."""

from retail_pipeline.events.contract import EVENT_TYPE_TOPIC, TOPIC_EVENT_TYPES, TOPICS
from retail_pipeline.events.validator import check_event, validate_events, validate_records

__all__ = [
    "EVENT_TYPE_TOPIC",
    "TOPICS",
    "TOPIC_EVENT_TYPES",
    "check_event",
    "validate_events",
    "validate_records",
]
