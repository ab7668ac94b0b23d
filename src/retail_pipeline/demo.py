"""The end-to-end demo on embedded defaults: no services needed (or a local broker)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.events.simulator import FaultRates, generate
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.transform import read_answers, run_transform
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse


def run_demo(
    workdir: Path,
    *,
    days: int,
    orders_per_day: int,
    seed: int,
    kafka: bool = False,
    bootstrap: str | None = None,
    warehouse: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Simulate with faults, load Bronze, build Silver/Gold and return the six answers.

    Rerunning is safe: the simulation is deterministic and the loaders skip what the
    warehouse already holds, so the answers stay the same. With ``kafka`` the events go
    through Kafka instead of straight from files: ``bootstrap`` if given, else the local
    broker (``retail-pipeline kafka up``, started if needed).
    """
    sim = workdir / "sim"
    echo(f"simulating {days} days x {orders_per_day} orders/day into {sim} (seed {seed})")
    generate(sim, days=days, orders_per_day=orders_per_day, seed=seed, faults=FaultRates())
    files = sorted((sim / "events").glob("*.ndjson"))
    with DuckDBWarehouse(warehouse) as wh:
        echo(f"warehouse: {wh.path}")
        for snapshot in sorted((sim / "snapshots").iterdir()):
            for entity in ("customers", "products"):
                load_reference(wh, entity, snapshot / f"{entity}.json")
        echo(f"reference data: {len(list((sim / 'snapshots').iterdir()))} daily snapshots")
        if kafka:
            _through_kafka(wh, files, workdir, bootstrap, echo)
        else:
            echo(f"events: {ingest_files(wh, files).line()}")
        path = wh.path
    summary = run_transform(path)
    echo(summary.line())
    if not summary.success:
        raise PipelineError("dbt build failed; see the failures above")
    return read_answers(path)


def _through_kafka(
    wh: DuckDBWarehouse,
    files: list[Path],
    workdir: Path,
    bootstrap: str | None,
    echo: Callable[[str], None],
) -> None:
    from retail_pipeline.ingestion.kafka import broker
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.ingestion.kafka.producer import produce_files

    servers = bootstrap or broker.start(broker.default_home()).bootstrap_servers
    # Topics of their own per simulation, so that whatever else the broker holds stays out.
    digest = hashlib.sha256((workdir / "sim" / "truth.json").read_bytes()).hexdigest()[:10]
    prefix = f"demo-{digest}."
    topics = [prefix + topic for topic in (*TOPICS, "dead_letter")]
    broker.ensure_topics(servers, topics)
    echo(f"kafka: broker at {servers}, topics {prefix}*")
    marker = workdir / f"produced-{digest}.marker"
    if not marker.exists():  # produce once per simulation; the consumer is exactly-once anyway
        summary = produce_files(files, bootstrap=servers, topic_prefix=prefix)
        echo(f"kafka: {summary.line()}")
        marker.write_text(servers)
    settings = ConsumerSettings(bootstrap=servers, topic_prefix=prefix, group_id=f"{prefix}bronze")
    consumer = KafkaBronzeConsumer(wh, settings)
    echo(f"kafka: {consumer.run(until_caught_up=True).line()}")
