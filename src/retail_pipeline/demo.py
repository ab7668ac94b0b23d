"""The end-to-end demo on embedded defaults: no services needed (or a local broker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from retail_pipeline.errors import PipelineError
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
    warehouse: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Simulate with faults, load Bronze, build Silver/Gold and return the six answers.

    Rerunning is safe: the simulation is deterministic and the loaders skip what the
    warehouse already holds, so the answers stay the same. With ``kafka`` the events go
    through the local broker (``retail-pipeline kafka up``) instead of straight from files.
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
            _through_kafka(wh, files, workdir, echo)
        else:
            echo(f"events: {ingest_files(wh, files).line()}")
        path = wh.path
    summary = run_transform(path)
    echo(summary.line())
    if not summary.success:
        raise PipelineError("dbt build failed; see the failures above")
    return read_answers(path)


def _through_kafka(
    wh: DuckDBWarehouse, files: list[Path], workdir: Path, echo: Callable[[str], None]
) -> None:
    from retail_pipeline.ingestion.kafka import broker
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.ingestion.kafka.producer import produce_files

    info = broker.start(broker.default_home())
    echo(f"kafka: broker at {info.bootstrap_servers}")
    marker = workdir / "produced.marker"
    if not marker.exists():  # produce once per demo folder; the consumer is exactly-once anyway
        echo(f"kafka: {produce_files(files, bootstrap=info.bootstrap_servers).line()}")
        marker.write_text(info.bootstrap_servers)
    consumer = KafkaBronzeConsumer(wh, ConsumerSettings(bootstrap=info.bootstrap_servers))
    echo(f"kafka: {consumer.run(until_caught_up=True).line()}")
