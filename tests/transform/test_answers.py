"""Gold reproduces the simulator's truth.json exactly, for several seeds with faults on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.transform import read_answers

from .conftest import Simulation

SEEDS = (11, 23, 37)


def assert_matches_truth(answers: dict[str, Any], truth: dict[str, Any]) -> None:
    """Counts exact, money within a cent, rates within 1e-6, hours within 1e-3."""
    assert answers.keys() == truth.keys()
    assert answers["orders_per_day"] == truth["orders_per_day"]

    money = pytest.approx
    revenue, expected = answers["revenue"], truth["revenue"]
    for key in ("gross", "refunds", "net"):
        assert revenue[key] == money(expected[key], abs=0.01), key
    assert [row["date"] for row in revenue["by_day"]] == [row["date"] for row in expected["by_day"]]
    for got, want in zip(revenue["by_day"], expected["by_day"], strict=True):
        for key in ("gross", "refunds", "net"):
            assert got[key] == money(want[key], abs=0.01), (got, want)

    conversion, expected = answers["conversion_rate"], truth["conversion_rate"]
    assert conversion["overall"] == pytest.approx(expected["overall"], abs=1e-6)
    assert len(conversion["by_day"]) == len(expected["by_day"])
    for got, want in zip(conversion["by_day"], expected["by_day"], strict=True):
        assert (got["date"], got["created"], got["converted"]) == (
            want["date"],
            want["created"],
            want["converted"],
        )
        assert got["rate"] == pytest.approx(want["rate"], abs=1e-6)

    assert len(answers["top_products"]) == len(truth["top_products"])
    for got, want in zip(answers["top_products"], truth["top_products"], strict=True):
        assert {k: v for k, v in got.items() if k != "revenue"} == {
            k: v for k, v in want.items() if k != "revenue"
        }
        assert got["revenue"] == money(want["revenue"], abs=0.01)

    rates, expected = answers["cancel_refund"], truth["cancel_refund"]
    assert rates["orders"] == expected["orders"]
    for key in ("canceled_rate", "refunded_rate", "canceled_or_refunded_rate"):
        assert rates[key] == pytest.approx(expected[key], abs=1e-6), key

    for segment, want in truth["lead_times_hours"].items():
        got = answers["lead_times_hours"][segment]
        assert got["count"] == want["count"], segment
        for key in ("mean", "p50", "p90"):
            if want[key] is None:
                assert got[key] is None
            else:
                assert got[key] == pytest.approx(want[key], abs=1e-3), (segment, key)


@pytest.mark.parametrize("seed", SEEDS)
def test_answers_equal_truth(
    seed: int,
    simulations: Callable[[int], Simulation],
    built: Callable[[int], Path],
) -> None:
    truth = json.loads(simulations(seed).truth.read_text())
    answers = read_answers(built(seed))
    assert_matches_truth(answers, truth)
    # the JSON is exactly METRICS.md's shape: same keys at every level, lists of 10 at most
    assert json.loads(json.dumps(answers)).keys() == truth.keys()
    assert len(answers["top_products"]) == 10
    assert answers["lead_times_hours"].keys() == truth["lead_times_hours"].keys()
    for row in answers["revenue"]["by_day"]:
        assert row.keys() == {"date", "gross", "refunds", "net"}
