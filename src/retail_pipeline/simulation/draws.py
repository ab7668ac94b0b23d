"""Cheap random draws from a run's one ``random.Random``: ranges and weighted picks.

The shop model and the fault injector draw from the same generator, so the order of their draws
is part of the output: the same seed gives the same files only while that order stays put.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any


def cumulative(weights: Sequence[float]) -> list[float]:
    """Running totals of ``weights``: the ``cum_weights`` that :meth:`Draws.pick` takes."""
    total = 0.0
    out = []
    for weight in weights:
        total += weight
        out.append(total)
    return out


class Draws:
    """Draws from ``rng``, cheaper than ``random.choices`` and ``randrange`` on the hot path."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.random = rng.random

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high)`` (``low`` when the range is empty)."""
        return low + int(self.random() * (high - low))

    def pick(self, values: Sequence[Any], cum_weights: list[float]) -> Any:
        """One of ``values`` by cumulative weights (like ``random.choices``, but cheaper)."""
        last = len(cum_weights) - 1
        return values[bisect_right(cum_weights, self.random() * cum_weights[-1], 0, last)]
