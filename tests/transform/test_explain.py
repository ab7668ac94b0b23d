"""``explain``: for random figures of simulations with faults, the contributing set equals the
one worked out from the simulator's own decisions (its order lifecycles, the truth's input,
under the truth's rules), it sums to the published figure exactly, and every counted event's
Bronze source is the line of the event file that holds it."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.simulation import generate
from retail_pipeline.simulation.truth import MS_PER_DAY, MS_PER_HOUR, OrderLifecycle
from retail_pipeline.transform.explain import SEGMENTS, explain

from ..conftest import HEAVY_FAULTS
from .conftest import load, transform
from .test_handbuilt import run_cli

ALL = 1_000_000
"""A limit above any figure's contributions here: every one is listed."""
SEEDS = (23, 24)


class Audited:
    def __init__(self, root: Path, warehouse: Path, lives: list[OrderLifecycle]) -> None:
        self.root = root
        self.warehouse = warehouse
        self.lives = lives

    def day(self, ms: int) -> str:
        from datetime import date, timedelta

        return (date(1970, 1, 1) + timedelta(days=ms // MS_PER_DAY)).isoformat()


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Audited]:
    cache: dict[int, Audited] = {}

    def get(seed: int) -> Audited:
        if seed not in cache:
            root = tmp_path_factory.mktemp(f"audit-{seed}")
            lives: list[OrderLifecycle] = []
            generate(
                root,
                days=3,
                orders_per_day=120,
                seed=seed,
                faults=HEAVY_FAULTS,
                observe=lives.append,
            )
            warehouse = root / "wh.duckdb"
            load(warehouse, snapshots=[root], events=sorted((root / "events").glob("*.ndjson")))
            transform(warehouse)
            cache[seed] = Audited(root, warehouse, lives)
        return cache[seed]

    return get


def counted(result: object) -> list:  # type: ignore[type-arg]
    return [c for c in result.contributions if c.counted]  # type: ignore[attr-defined]


def event_ms(c: object) -> int:
    return round(c.event_at.timestamp() * 1000)  # type: ignore[attr-defined]


def check_sources(audit: Audited, result: object) -> None:
    """Every counted event's first delivery is the file line that holds its event_id."""
    lines: dict[str, list[bytes]] = {}
    for c in counted(result):
        assert c.source is not None, c
        file, _, number = c.source.where.rpartition(":")
        text = lines.setdefault(file, Path(file).read_bytes().split(b"\n"))
        assert c.event_id.encode() in text[int(number) - 1], (c.event_id, c.source.where)
    assert result.more == 0  # type: ignore[attr-defined]
    assert result.adds_up, result.figures  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_figures_have_the_contributions_the_simulation_decided(
    seed: int, audited: Callable[[int], Audited]
) -> None:
    audit = audited(seed)
    rng = random.Random(seed)
    lives = audit.lives
    orders = {life.order_id for life in lives}
    days = sorted({audit.day(life.created_ms) for life in lives})

    for day in rng.sample(days, 2):
        result = explain("orders", audit.warehouse, day=day, limit=ALL)
        want = {life.order_id for life in lives if audit.day(life.created_ms) == day}
        assert {c.order_id for c in counted(result)} == want
        assert result.figures[0].published == str(len(want))
        created = {life.order_id: life.created_ms for life in lives}
        assert all(c.event_type == "order_created" for c in counted(result))
        assert all(event_ms(c) == created[c.order_id] for c in counted(result))
        check_sources(audit, result)

        result = explain("conversion", audit.warehouse, day=day, limit=ALL)
        want = {
            life.order_id for life in lives if audit.day(life.created_ms) == day and life.captures
        }
        assert {c.order_id for c in counted(result)} == want
        first_capture = {life.order_id: min(life.captures)[0] for life in lives if life.captures}
        assert all(c.event_type == "payment_captured" for c in counted(result))
        assert all(event_ms(c) == first_capture[c.order_id] for c in counted(result))
        assert {c.order_id for c in result.contributions} == {
            life.order_id for life in lives if audit.day(life.created_ms) == day
        }
        check_sources(audit, result)

        for status in ("canceled", "refunded", "canceled_or_refunded"):
            result = explain(
                "canceled-refunded", audit.warehouse, day=day, status=status, limit=ALL
            )
            want = {
                life.order_id
                for life in lives
                if audit.day(life.created_ms) == day
                and {"canceled": bool(life.cancels), "refunded": bool(life.refunds)}.get(
                    status, bool(life.cancels or life.refunds)
                )
            }
            assert {c.order_id for c in counted(result)} == want, status
            first = {  # the first cancel, else (refunded only) the first refund
                life.order_id: (
                    ("order_canceled", min(life.cancels))
                    if life.cancels and status != "refunded"
                    else ("payment_refunded", min(life.refunds)[0])
                )
                for life in lives
                if life.order_id in want
            }
            assert {c.order_id: (c.event_type, event_ms(c)) for c in counted(result)} == first
            check_sources(audit, result)

    money_days = sorted(
        {audit.day(ms) for life in lives for ms, _ in (*life.captures, *life.refunds)}
    )
    for day in money_days:
        result = explain("revenue", audit.warehouse, day=day, limit=ALL)
        want = Counter(
            (life.order_id, part, cents)
            for life in lives
            if life.currency == "USD"
            for part, moves in (("gross", life.captures), ("refunds", life.refunds))
            for ms, cents in moves
            if audit.day(ms) == day
        )
        got = Counter((c.order_id, c.part, int(c.amount * 100)) for c in counted(result))
        assert got == want
        left_out = [c for c in result.contributions if not c.counted]
        assert all(c.order_id not in orders for c in left_out if c.rule == "orphan")
        assert all(c.rule in ("orphan", "other_currency") for c in left_out)
        check_sources(audit, result)

    revenue: Counter[str] = Counter()
    lines: dict[str, Counter[tuple[str, int]]] = {}
    for life in lives:
        if life.currency != "USD" or not life.captures or life.cancels or life.refunds:
            continue
        if not life.baskets:
            continue
        latest_ms, items = life.baskets[0]
        for ms, basket in life.baskets[1:]:
            if ms >= latest_ms:
                latest_ms, items = ms, basket
        for product_id, quantity, unit_price in items:
            revenue[product_id] += quantity * unit_price
            lines.setdefault(product_id, Counter())[(life.order_id, quantity * unit_price)] += 1
    for product in rng.sample(sorted(revenue), 3):
        result = explain("product", audit.warehouse, product=product, limit=ALL)
        got = Counter((c.order_id, int(c.amount * 10_000)) for c in counted(result))
        assert got == lines[product]
        check_sources(audit, result)

    for segment in SEGMENTS:
        result = explain("lead-time", audit.warehouse, segment=segment, limit=ALL)
        want_hours: dict[str, float] = {}
        for life in lives:
            dispatch = min(life.dispatches, default=None)
            delivery = min(life.deliveries, default=None)
            start, end = {
                "created_to_shipped": (life.created_ms, dispatch),
                "shipped_to_delivered": (dispatch, delivery),
                "created_to_delivered": (life.created_ms, delivery),
            }[segment]
            if start is not None and end is not None:
                want_hours[life.order_id] = (end - start) / MS_PER_HOUR
        got_hours = {c.order_id: float(c.amount) for c in counted(result)}
        later = [
            min(life.dispatches or [0])
            if segment == "created_to_shipped"
            else min(life.deliveries or [0])
            for life in lives
        ]
        at_later = {life.order_id: ms_ for life, ms_ in zip(lives, later, strict=True)}
        assert all(event_ms(c) == at_later[c.order_id] for c in counted(result)), segment
        assert got_hours.keys() == want_hours.keys(), segment
        for order_id, hours in want_hours.items():
            assert got_hours[order_id] == pytest.approx(hours, abs=1e-6)
        check_sources(audit, result)


def test_duplicates_and_orphans_are_named_not_counted(audited: Callable[[int], Audited]) -> None:
    audit = audited(SEEDS[0])
    days = sorted({audit.day(ms) for life in audit.lives for ms, _ in life.captures})
    duplicates = 0
    orphans = 0
    for day in days:
        result = explain("revenue", audit.warehouse, day=day, limit=ALL)
        for c in result.contributions:
            duplicates += len(c.duplicates)
            for d in c.duplicates:  # a later delivery of the same event, elsewhere in Bronze
                assert (d.ingested_at, d.where) >= (c.source.ingested_at, c.source.where)
                assert d.where != c.source.where
            orphans += c.rule == "orphan"
    assert duplicates and orphans  # the faults put both in these days


def test_the_command_prints_the_sum_and_json(audited: Callable[[int], Audited]) -> None:
    audit = audited(SEEDS[0])
    day = audit.day(audit.lives[0].created_ms)
    text = run_cli("explain", "orders", "--date", day, "--limit", "3", warehouse=audit.warehouse)
    assert "adds up" in text.stdout and "DOES NOT" not in text.stdout
    assert "first published as" in text.stdout  # the figure's history, from the ledger
    doc = json.loads(
        run_cli("explain", "revenue", "--date", day, "--json", warehouse=audit.warehouse).stdout
    )
    assert doc["adds_up"] is True
    gross = next(f for f in doc["figures"] if f["figure"] == "gross_revenue")
    assert gross["published"] == gross["sum_of_contributions"]
    total = sum(
        (Decimal(c["amount"]) for c in doc["contributions"] if c["counted_in"] == "gross"),
        Decimal(0),
    )
    assert f"{total:.2f}" == gross["published"] or doc["more"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"question": "orders"}, "--date is required"),
        ({"question": "orders", "day": "2026-13-01"}, "--date: not a date"),
        ({"question": "product"}, "--product is required"),
        (
            {"question": "lead-time", "segment": "x'; drop table gold.fct_orders; --"},
            "--segment: one of",
        ),
        ({"question": "canceled-refunded", "status": "both"}, "--status: one of"),
        ({"question": "why"}, "the question is one of"),
    ],
)
def test_bad_questions_are_one_line(
    args: dict[str, str], message: str, audited: Callable[[int], Audited]
) -> None:
    audit = audited(SEEDS[0])
    question = args.pop("question")
    with pytest.raises(PipelineError, match=message):
        explain(question, audit.warehouse, **args)  # type: ignore[arg-type]


def test_a_hostile_product_id_is_data(audited: Callable[[int], Audited]) -> None:
    audit = audited(SEEDS[0])
    result = explain("product", audit.warehouse, product="p' or '1'='1")
    assert result.contributions == [] and result.adds_up
    assert result.figures[0].published == "0.00"
