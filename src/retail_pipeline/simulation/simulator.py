"""The simulator: a deterministic shop's events, faults included, its snapshots and its truth.

:func:`generate` wires the parts together and runs the days: the shop model
(:mod:`~retail_pipeline.simulation.shop`) decides customers, products and every order's events;
each event is encoded as a line (:mod:`~retail_pipeline.simulation.encoding`) and passed through
the fault injector (:mod:`~retail_pipeline.simulation.faults`) to the event files
(:mod:`~retail_pipeline.simulation.writers`), which also write a reference snapshot per day and
``truth.json`` (:mod:`~retail_pipeline.simulation.truth`).

Everything derives from ``random.Random(seed)``, drawn in one order by the shop and the
injector; no wall clock is read, so the same arguments give byte-identical files. About 8% of
orders (customers in the UK and the euro area) are in GBP or EUR, and their payments carry the
same currency.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from retail_pipeline.events.contract import TOPICS
from retail_pipeline.simulation.draws import Draws
from retail_pipeline.simulation.encoding import EPOCH, EventEncoder
from retail_pipeline.simulation.faults import FaultInjector, FaultRates
from retail_pipeline.simulation.shop import Shop
from retail_pipeline.simulation.truth import MS_PER_DAY, OrderLifecycle
from retail_pipeline.simulation.writers import EventFiles, write_snapshot, write_truth

__all__ = ["FaultRates", "GenerationSummary", "TopicSummary", "generate"]


@dataclass(frozen=True)
class TopicSummary:
    """What was written to one topic's NDJSON file."""

    path: Path
    lines: int
    """All lines: valid events + duplicates + malformed."""
    valid_events: int
    """Distinct valid events, orphans included."""
    duplicates: int
    """Extra copies of valid events (same bytes, same ``event_id``)."""
    malformed: int
    """Garbage lines that fail the contract."""
    orphans: int
    """Distinct valid events whose ``order_id`` never gets an ``order_created``."""
    out_of_order: int
    """Valid events delayed by minutes."""
    late: int
    """Valid events delayed by hours."""
    malformed_by_kind: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationSummary:
    """Counts and paths of one simulator run."""

    out_dir: Path
    seed: int
    days: int
    first_day: date
    orders: int
    in_flight: int
    """Orders whose lifecycle goes on past the end of the window (its later events are absent)."""
    customers: int
    products: int
    topics: Mapping[str, TopicSummary]
    customers_path: Path
    products_path: Path
    snapshots_dir: Path
    truth_path: Path
    channel_truth_path: Path
    """``truth_by_channel.json``: Gold's orders and discounts per day and channel, exactly."""

    @property
    def lines(self) -> int:
        """Lines written to all event files."""
        return sum(topic.lines for topic in self.topics.values())

    @property
    def valid_events(self) -> int:
        """Distinct valid events in all event files."""
        return sum(topic.valid_events for topic in self.topics.values())

    @property
    def duplicates(self) -> int:
        """Duplicate lines in all event files."""
        return sum(topic.duplicates for topic in self.topics.values())

    @property
    def malformed(self) -> int:
        """Malformed lines in all event files."""
        return sum(topic.malformed for topic in self.topics.values())

    @property
    def orphans(self) -> int:
        """Orphan events in all event files."""
        return sum(topic.orphans for topic in self.topics.values())


def generate(
    out_dir: Path,
    *,
    days: int,
    orders_per_day: int,
    seed: int,
    faults: FaultRates | None = FaultRates(),
    start: date = date(2026, 1, 1),
    progress: Callable[[int], None] | None = None,
    observe: Callable[[OrderLifecycle], None] | None = None,
) -> GenerationSummary:
    """Simulate ``days`` days of a shop from ``start`` and write events, snapshots and truth.

    Writes into ``out_dir``: ``events/{orders,payments,shipments}.ndjson`` (arrival order,
    faults injected per ``faults``: the default :class:`FaultRates` when left out, none at all
    when ``None``, as for :meth:`FaultRates.none`), ``customers.json`` and
    ``products.json`` (final reference snapshot), ``snapshots/YYYY-MM-DD/`` (one snapshot per
    day) and ``truth.json`` (the docs/metrics.md answers). ``orders_per_day`` is the mean daily
    volume (weekday and random variation around it). ``progress`` is called after each
    simulated day with the number of days completed. The same arguments give byte-identical
    output.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if orders_per_day < 0:
        raise ValueError(f"orders_per_day must not be negative, got {orders_per_day}")
    out_dir = Path(out_dir)
    events_dir = out_dir / "events"
    snapshots_dir = out_dir / "snapshots"
    events_dir.mkdir(parents=True, exist_ok=True)
    start_ms = (start - EPOCH).days * MS_PER_DAY

    draws = Draws(random.Random(seed))
    files = EventFiles([events_dir / f"{topic}.ndjson" for topic in TOPICS], start_ms)
    injector = FaultInjector(draws, faults if faults is not None else FaultRates.none(), files.put)
    shop = Shop(
        draws,
        EventEncoder(draws.rng),
        injector.deliver,
        seed=seed,
        orders_per_day=orders_per_day,
        start_ms=start_ms,
        horizon_ms=start_ms + days * MS_PER_DAY,
    )
    shop.observe = observe
    shop.make_products()
    shop.make_customers()
    with files:
        for day in range(days):
            day_date = start + timedelta(days=day)
            day_ms = start_ms + day * MS_PER_DAY
            if day:
                shop.evolve_products()
            shop.refresh_catalogue()
            for created_ms in shop.order_times(day_ms, day_date.weekday()):
                files.write_before(created_ms)  # everything queued from now on arrives later
                shop.place_order(created_ms, day_ms)
            shop.add_signups(day_ms)
            write_snapshot(snapshots_dir / day_date.isoformat(), shop.customers, shop.products)
            if progress is not None:
                progress(day + 1)
        files.flush()

    customers_path, products_path = write_snapshot(out_dir, shop.customers, shop.products)
    truth_path = write_truth(out_dir / "truth.json", shop.truth.answers(shop.product_info()))
    channel_truth_path = write_truth(
        out_dir / "truth_by_channel.json", {"orders_by_channel": shop.truth.orders_by_channel()}
    )
    topics = {
        name: TopicSummary(
            path=files.paths[i],
            lines=counts.valid + counts.duplicates + counts.malformed,
            valid_events=counts.valid,
            duplicates=counts.duplicates,
            malformed=counts.malformed,
            orphans=counts.orphans,
            out_of_order=counts.out_of_order,
            late=counts.late,
            malformed_by_kind=dict(sorted(counts.malformed_by_kind.items())),
        )
        for i, (name, counts) in enumerate(zip(TOPICS, injector.counts, strict=True))
    }
    return GenerationSummary(
        out_dir=out_dir,
        seed=seed,
        days=days,
        first_day=start,
        orders=shop.truth.orders,
        in_flight=shop.in_flight,
        customers=len(shop.customers),
        products=len(shop.products),
        topics=topics,
        customers_path=customers_path,
        products_path=products_path,
        snapshots_dir=snapshots_dir,
        truth_path=truth_path,
        channel_truth_path=channel_truth_path,
    )
