"""Gold reproduces the simulator's truth.json exactly, for several seeds with faults on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.events.truth import compare_with_truth
from retail_pipeline.transform import read_answers

from .conftest import Simulation

SEEDS = (11, 23, 37)


def assert_matches_truth(answers: dict[str, Any], truth: dict[str, Any]) -> None:
    """Everything exact (money to the cent, counts, rates of exact counts), except lead-time
    statistics, which are floating-point hours (see ``compare_with_truth``)."""
    assert compare_with_truth(answers, truth) == {}


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
