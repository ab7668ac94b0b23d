"""``/api/explain`` without a server: what it refuses before it reads anything."""

from __future__ import annotations

import threading
from http import HTTPStatus

import pytest

from retail_pipeline.dashboard.server import (
    EXPLAIN_AT_ONCE,
    RequestRefused,
    explanation,
)


class NoWarehouse:
    """A LiveGold on a warehouse that does not exist: reading it would be a 503 ("cannot
    explain now"), so a 400 or the burst's 503 shows that nothing was read."""

    warehouse = "/nonexistent/never.duckdb"
    target = "duckdb"


def test_a_burst_of_drill_throughs_is_refused_not_queued() -> None:
    slots = threading.BoundedSemaphore(EXPLAIN_AT_ONCE)
    for _ in range(EXPLAIN_AT_ONCE):
        assert slots.acquire(blocking=False)  # the ones being answered
    with pytest.raises(RequestRefused) as refused:
        explanation(NoWarehouse(), {"question": "orders", "date": "2026-01-01"}, slots)  # type: ignore[arg-type]
    assert refused.value.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert "try again" in str(refused.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"question": "orders", "limit": "1"}, "/api/explain takes"),
        ({"question": "product", "product": "p" * 201}, "over 200 characters"),
        ({"question": "orders"}, "--date is required"),
        ({"question": "lead-time", "segment": "'; drop table x; --"}, "--segment: one of"),
    ],
)
def test_bad_parameters_are_a_400_before_any_read(params: dict[str, str], message: str) -> None:
    slots = threading.BoundedSemaphore(EXPLAIN_AT_ONCE)
    with pytest.raises(RequestRefused) as refused:
        explanation(NoWarehouse(), params, slots)  # type: ignore[arg-type]
    assert refused.value.status == HTTPStatus.BAD_REQUEST
    assert message in str(refused.value)
    assert slots.acquire(blocking=False) and slots.acquire(blocking=False)  # none kept
