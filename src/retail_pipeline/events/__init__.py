"""Event contract and its validator.

The validator's names are imported on first use: importing it builds arrays with pyarrow, which
loads pandas (some 200 ms), and most commands (and the contract's users) never validate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retail_pipeline.events.contract import EVENT_TYPE_TOPIC, TOPIC_EVENT_TYPES, TOPICS

if TYPE_CHECKING:
    from retail_pipeline.events.validator import check_event, validate_events, validate_records

__all__ = [
    "EVENT_TYPE_TOPIC",
    "TOPICS",
    "TOPIC_EVENT_TYPES",
    "check_event",
    "validate_events",
    "validate_records",
]


def __getattr__(name: str) -> Any:
    if name in {"check_event", "validate_events", "validate_records"}:
        from retail_pipeline.events import validator

        return getattr(validator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
