"""The fault injector against the pipeline's own validator: every garbage line it writes, of every
kind, is dead-lettered, and every valid line it passes on is accepted.

``test_simulator.py`` judges the same lines by the plain-Python reference of the contract; here the
judge is :mod:`retail_pipeline.events.validator`, the one every ingestion path calls.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from retail_pipeline.events import contract
from retail_pipeline.events.validator import validate_events
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.simulation.draws import Draws
from retail_pipeline.simulation.faults import MALFORMED_KINDS, FaultInjector

ONLY_GARBAGE = FaultRates(duplicate=0.0, out_of_order=0.0, late=0.0, malformed=1.0, orphan=0.0)


def _lines(out: Path, topic: str) -> list[bytes]:
    return (out / "events" / f"{topic}.ndjson").read_bytes().splitlines()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(out, days=2, orders_per_day=120, seed=21, faults=None)
    return out


def test_the_validator_rejects_every_malformed_kind(clean_run: Path) -> None:
    """Garbage made from valid lines of each topic, each line's kind known from the injector's
    count, is dead-lettered by the validator with a reason, whatever the kind."""
    injector = FaultInjector(Draws(random.Random(7)), FaultRates.none(), lambda *_: None)
    rejected: Counter[str] = Counter()
    accepted: dict[str, list[bytes]] = defaultdict(list)
    for index, topic in enumerate(contract.TOPICS):
        valid = _lines(clean_run, topic)
        assert validate_events(valid, [topic] * len(valid)).valid == len(valid), topic
        counts = injector.counts[index].malformed_by_kind
        garbage: list[tuple[str, bytes]] = []
        for line in valid[:150]:
            for _ in range(4):
                before = dict(counts)
                made = injector.garbage(index, line + b"\n")
                (kind,) = [k for k in counts if counts[k] != before.get(k, 0)]
                assert made.endswith(b"\n") and made.count(b"\n") == 1, (kind, made)
                garbage.append((kind, made[:-1]))
        verdicts = validate_events([raw for _, raw in garbage], [topic] * len(garbage))
        for (kind, raw), reason in zip(garbage, verdicts.reasons(), strict=True):
            if reason is None:
                accepted[kind].append(raw)
            else:
                rejected[kind] += 1
    assert not accepted, {kind: lines[:2] for kind, lines in accepted.items()}
    assert set(rejected) == set(MALFORMED_KINDS)


def test_the_validator_dead_letters_exactly_the_garbage_lines(tmp_path: Path) -> None:
    """A run with a garbage line next to every valid event: per topic, the validator accepts the
    valid events and dead-letters the rest, as many as the summary counts as malformed."""
    summary = generate(tmp_path, days=2, orders_per_day=150, seed=8, faults=ONLY_GARBAGE)
    for topic in contract.TOPICS:
        lines = _lines(tmp_path, topic)
        verdicts = validate_events(lines, [topic] * len(lines))
        written = summary.topics[topic]
        assert written.malformed > 0 and written.lines == len(lines), topic
        assert len(verdicts.dead_rows) == written.malformed, topic
        assert verdicts.valid == written.valid_events, topic
        assert all(reason for reason in verdicts.dead_reasons), topic
