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
    """Everything exact (money to the cent, counts, rates of exact counts), except lead-time
    statistics, which are floating-point hours: within 1e-3 h."""
    assert answers.keys() == truth.keys()
    assert answers["orders_per_day"] == truth["orders_per_day"]
    assert answers["revenue"] == truth["revenue"]
    assert answers["conversion_rate"] == truth["conversion_rate"]
    assert answers["top_products"] == truth["top_products"]
    assert answers["cancel_refund"] == truth["cancel_refund"]

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
