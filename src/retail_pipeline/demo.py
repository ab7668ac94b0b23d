"""The end-to-end demo on embedded defaults: no services needed (or a local broker).

:func:`run_demo` simulates a shop with faults, loads Bronze, builds Silver and Gold and reads the
six answers, then compares them with the simulation's ``truth.json`` (a :class:`DemoResult`).

The demo keeps a warehouse of its own, ``<workdir>/warehouse.duckdb`` unless one is given, so
the README's commands on ``data/warehouse.duckdb`` start clean after it. Beside the warehouse,
``<warehouse>.simulation.json`` records which simulation it holds: rerunning the same simulation
loads nothing twice (same answers); another simulation (other seed, days or orders per day)
gets a fresh demo warehouse, and a warehouse given by the caller that holds anything else is
refused instead of mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.settings import environment, kafka_config_variables, utf8_path
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.simulation.truth import ANSWER_NAMES, compare_with_truth
from retail_pipeline.transform import NodeProgress, read_answers, run_transform
from retail_pipeline.warehouse import Warehouse, open_warehouse

if TYPE_CHECKING:
    from retail_pipeline.local.kafka_broker import BrokerInfo

WAREHOUSE_NAME = "warehouse.duckdb"
"""The demo's own warehouse, inside its workdir."""
MARKER_SUFFIX = ".simulation.json"
"""Beside a demo warehouse: which simulation it holds."""

DbtProgress = Callable[[], AbstractContextManager[Callable[[NodeProgress], None]]]
"""Makes the callback for dbt's nodes for the length of the build (the CLI's ``node_progress``)."""


@dataclass(frozen=True)
class DemoResult:
    """The six answers of a demo run, where they came from, and how they compare with truth."""

    answers: dict[str, Any]
    """docs/metrics.md's JSON shape, read from Gold."""
    warehouse: Path | None
    """The DuckDB warehouse; None for the local Snowflake, gone with the emulator."""
    truth_file: Path
    differences: dict[str, str]
    """Per answer that differs from the truth, the first difference (empty: all equal)."""

    @property
    def matches_truth(self) -> bool:
        """Whether all six answers equal the simulation's truth."""
        return not self.differences

    def verdict(self) -> str:
        """The last words of the demo: whether the answers equal the truth, and if not, where."""
        if self.matches_truth:
            return f"verdict: all six answers equal the simulation's truth ({self.truth_file})"
        names = ", ".join(ANSWER_NAMES.get(key, key) for key in self.differences)
        lines = [
            f"verdict: {len(self.differences)} of the six answers differ from the simulation's"
            f" truth ({self.truth_file}): {names}"
        ]
        lines += [f"  {detail}" for detail in self.differences.values()]
        return "\n".join(lines)

    def where(self) -> str:
        """Where the demo's warehouse is, and how to read it again."""
        if self.warehouse is None:
            return (
                "the local Snowflake was stopped and its data with it; docs/snowflake.md says"
                " how to run the pipeline on a real account"
            )
        return (
            f"the demo's warehouse is {self.warehouse} (read it again with"
            f" `retail-pipeline answers --warehouse {self.warehouse}`, or see it in a browser"
            f" with `retail-pipeline dashboard --warehouse {self.warehouse}`)"
        )


@dataclass(frozen=True)
class _Simulation:
    seed: int
    days: int
    orders_per_day: int
    digest: str
    """sha256 of everything the simulator wrote for it (events, snapshots, truth)."""

    def record(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "days": self.days,
            "orders_per_day": self.orders_per_day,
            "simulation_sha256": self.digest,
        }

    def describe(self) -> str:
        return f"seed {self.seed}, {self.days} days x {self.orders_per_day} orders/day"


def _describe(record: dict[str, Any], current: _Simulation) -> str:
    try:
        held = _Simulation(
            int(record["seed"]),
            int(record["days"]),
            int(record["orders_per_day"]),
            str(record["simulation_sha256"]),
        )
    except (KeyError, TypeError, ValueError):
        return "a simulation it cannot name"
    if held.describe() == current.describe():
        return f"{held.describe()} from another version of the simulator"
    return held.describe()


def run_demo(
    workdir: Path,
    *,
    days: int,
    orders_per_day: int,
    seed: int,
    kafka: bool = False,
    bootstrap: str | None = None,
    warehouse: Path | None = None,
    target: str = "duckdb",
    start_broker: Callable[[], BrokerInfo] | None = None,
    dbt_progress: DbtProgress | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Simulate with faults, load Bronze, build Silver/Gold, compare the answers with truth.

    The simulation goes to ``workdir/sim``; the warehouse is ``warehouse`` if given (never
    ``$RETAIL_WAREHOUSE``), else ``workdir/warehouse.duckdb``. Rerunning is safe: the
    simulation is deterministic and the loaders skip what the warehouse already holds, so the
    answers stay the same. A different simulation replaces the demo's own warehouse; a given
    ``warehouse`` holding anything but this simulation raises :class:`PipelineError`.

    With ``kafka`` the events go through Kafka instead of straight from files: ``bootstrap``
    if given, else the local broker, started by ``start_broker`` (default: ``broker.start``
    on ``broker.default_home()``). A broker the demo started is stopped again when the events
    are in, also on errors and Ctrl-C; one that was already running is left running.
    ``dbt_progress`` wraps the dbt build and reports its nodes (the CLI passes a rich
    progress bar, ``retail_pipeline.cli.output.node_progress``).

    ``target`` ``"snowflake"`` loads, builds and reads a local Snowflake emulator instead
    (:mod:`retail_pipeline.local.snowflake_emulator`), started empty and stopped at the end; it
    takes no ``warehouse``. ``RETAIL_TARGET`` and the ``SNOWFLAKE_*`` settings are not used: the
    demo never touches a real account.
    """
    if target not in ("duckdb", "snowflake"):
        raise PipelineError(f"unknown target {target!r}: expected duckdb or snowflake")
    if target == "snowflake" and warehouse is not None:
        raise PipelineError("--warehouse names a DuckDB file; the snowflake demo has none")
    if target == "duckdb":  # a path DuckDB cannot open is refused before anything is written
        utf8_path(warehouse if warehouse is not None else workdir / WAREHOUSE_NAME, "warehouse")
    sim = workdir / "sim"
    echo(f"simulating {days} days x {orders_per_day} orders/day into {sim} (seed {seed})")
    summary = generate(
        sim, days=days, orders_per_day=orders_per_day, seed=seed, faults=FaultRates()
    )
    snapshots = _snapshot_days(summary.snapshots_dir, summary.first_day, days)
    simulation = _Simulation(seed, days, orders_per_day, _digest(sim, snapshots))
    files = sorted((sim / "events").glob("*.ndjson"))

    with ExitStack() as stack:
        path: Path | None = None
        if target == "snowflake":
            stack.enter_context(_local_snowflake(workdir, echo))
        else:
            path = warehouse if warehouse is not None else workdir / WAREHOUSE_NAME
            _claim(path, simulation, own=warehouse is None, echo=echo)
            own = " (the demo's own, apart from the default data/warehouse.duckdb)"
            echo(f"warehouse: {path}{own if warehouse is None else ''}")
        with open_warehouse(path, target=target) as wh:
            for snapshot in snapshots:
                for entity in ("customers", "products"):
                    load_reference(wh, entity, snapshot / f"{entity}.json")
            echo(f"reference data: {len(snapshots)} daily snapshots")
            if kafka:
                with _kafka_servers(bootstrap, start_broker, echo) as servers:
                    _through_kafka(wh, files, simulation.digest, servers, echo)
            else:
                echo(f"events: {ingest_files(wh, files).line()}")

        echo("dbt: building Silver and Gold (models, data tests, unit tests)")
        with dbt_progress() if dbt_progress is not None else nullcontext(None) as progress:
            built = run_transform(path, progress=progress, target=target)
        echo(built.line())
        if not built.success:
            for failure in built.failures:
                echo(f"failed: {failure.unique_id}: {failure.message}")
            raise PipelineError(f"dbt build failed ({len(built.failures)} failing nodes)")
        answers = read_answers(path, target=target)
    truth = json.loads(summary.truth_path.read_text())
    return DemoResult(answers, path, summary.truth_path, compare_with_truth(answers, truth))


@contextmanager
def _local_snowflake(workdir: Path, echo: Callable[[str], None]) -> Iterator[None]:
    """The local Snowflake emulator for the length of the demo, announced and then stopped."""
    from retail_pipeline.local.snowflake_emulator import DATABASE, local_snowflake

    with local_snowflake(workdir / "snowflake") as emulator:
        where = f"{emulator.connect_args['host']}:{emulator.connect_args['port']}"
        echo(
            f"warehouse: database {DATABASE} on a local Snowflake emulator (snowduck) at {where};"
            " the demo stops it at the end"
        )
        yield
    echo("warehouse: stopped the local Snowflake emulator")


def _snapshot_days(snapshots_dir: Path, first_day: date, days: int) -> list[Path]:
    """This simulation's daily snapshot folders; those of an earlier, longer one are removed."""
    wanted = {(first_day + timedelta(days=day)).isoformat() for day in range(days)}
    for folder in snapshots_dir.iterdir():
        if folder.name not in wanted and folder.is_dir() and _is_iso_date(folder.name):
            shutil.rmtree(folder)
    return [snapshots_dir / name for name in sorted(wanted)]


def _is_iso_date(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def _digest(sim: Path, snapshots: list[Path]) -> str:
    """sha256 over the simulation's files (names and contents)."""
    files = [
        sim / "truth.json",
        sim / "customers.json",
        sim / "products.json",
        *sorted((sim / "events").glob("*.ndjson")),
        *(file for folder in snapshots for file in sorted(folder.iterdir())),
    ]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(sim).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _claim(path: Path, simulation: _Simulation, *, own: bool, echo: Callable[[str], None]) -> None:
    """Make sure the warehouse at ``path`` holds nothing but ``simulation`` (see the module)."""
    marker = path.with_name(path.name + MARKER_SUFFIX)
    if path.is_file():
        try:
            held: dict[str, Any] | None = json.loads(marker.read_text())
        except FileNotFoundError:
            held = None
        except (OSError, ValueError):
            held = {}
        if held == simulation.record():
            return
        if held is None:
            way_out = "remove it or give the demo a --warehouse" if own else "give another"
            raise PipelineError(
                f"warehouse {path} holds data the demo did not load (no {marker.name} beside"
                f" it); {way_out}"
            )
        other = _describe(held, simulation) if isinstance(held, dict) else "another simulation"
        if not own:
            raise PipelineError(
                f"warehouse {path} holds another demo simulation ({other}), not this one"
                f" ({simulation.describe()}); remove it or give the demo a new --warehouse"
            )
        echo(f"warehouse: {path} held another simulation ({other}); starting a fresh one")
        for stale in (path, path.with_name(path.name + ".wal")):
            stale.unlink(missing_ok=True)
    elif path.exists():
        raise PipelineError(f"warehouse {path} is a directory, expected a DuckDB file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(simulation.record(), indent=2) + "\n")
    except OSError as exc:
        parents = (path.parent, *path.parent.parents)
        blocker = next((p for p in parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, expected a folder" if blocker else exc.strerror or exc
        raise PipelineError(f"cannot create warehouse {path}: {reason}") from None


@contextmanager
def _kafka_servers(
    bootstrap: str | None,
    start_broker: Callable[[], BrokerInfo] | None,
    echo: Callable[[str], None],
) -> Iterator[str]:
    """``bootstrap``, or the local broker: started if needed, and then stopped again.

    The operator's librdkafka properties (``RETAIL_KAFKA_CONFIG_FILE``, ``_*``) are for
    ``bootstrap``'s cluster. Inside the block, the local broker's clients get its own instead:
    none for a plaintext broker, its client properties file for a sasl_ssl one (``kafka up
    --security``), so an exported file of another cluster does not break the demo."""
    if bootstrap:
        yield bootstrap
        return
    from retail_pipeline.local import kafka_broker as broker

    try:
        info = start_broker() if start_broker is not None else broker.start(broker.default_home())
    except broker.BrokerError as exc:
        raise PipelineError(f"the local Kafka broker could not start: {exc}") from None
    own = broker.client_properties_file(info.home)
    client_env = {name: "" for name in kafka_config_variables()}
    client_env["RETAIL_KAFKA_CONFIG_FILE"] = str(own) if own else ""
    if info.reused:
        echo(
            f"kafka: using the broker already running at {info.bootstrap_servers}"
            f" (pid {info.pid}); it stays running"
        )
        with environment(**client_env):
            yield info.bootstrap_servers
        return
    echo(
        f"kafka: started a broker at {info.bootstrap_servers} (pid {info.pid});"
        " the demo stops it when the events are in"
    )
    try:
        with environment(**client_env):
            yield info.bootstrap_servers
    finally:
        try:
            broker.stop(info.home)
        except broker.BrokerError as exc:
            echo(f"kafka: could not stop the broker the demo started: {exc}")
        else:
            echo(f"kafka: stopped the broker the demo started (pid {info.pid})")


def _through_kafka(
    wh: Warehouse,
    files: list[Path],
    digest: str,
    servers: str,
    echo: Callable[[str], None],
) -> None:
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.ingestion.kafka.producer import produce_files
    from retail_pipeline.ingestion.kafka.status import partition_lags
    from retail_pipeline.local import kafka_broker as broker

    # Topics of their own per simulation, so that whatever else the broker holds stays out.
    prefix = f"demo-{digest[:10]}."
    topics = tuple(prefix + topic for topic in TOPICS)
    broker.ensure_topics(servers, [*topics, prefix + "dead_letter"])
    lags, error = partition_lags([], servers, topics)
    if error:
        raise PipelineError(error)
    on_broker = sum(lag.end_offset or 0 for lag in lags)  # consumers' dead letters left out
    lines = sum(1 for file in files for line in file.read_bytes().splitlines() if line.strip())
    echo(f"kafka: topics {prefix}* on {servers}")
    if on_broker < lines:  # produce once per simulation and broker; the consumer is exactly-once
        summary = produce_files(files, bootstrap=servers, topic_prefix=prefix)
        echo(f"kafka: {summary.line()}")
    else:
        echo(f"kafka: the topics hold this simulation already ({on_broker:,} messages)")
    settings = ConsumerSettings(bootstrap=servers, topic_prefix=prefix, group_id=f"{prefix}bronze")
    consumer = KafkaBronzeConsumer(wh, settings)
    echo(f"kafka: {consumer.run(until_caught_up=True).line()}")
