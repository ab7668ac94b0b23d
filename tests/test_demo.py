"""The README's first command: simulate, load, transform, answer, judge; files or through Kafka.

One small demo runs once for the module (``demo_run``); tests that go on from it rerun it in
place or work on a copy of its folder, so each dbt build in this file is one a test needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import pytest

from retail_pipeline import cli
from retail_pipeline.demo import MARKER_SUFFIX, DemoResult, run_demo
from retail_pipeline.errors import PipelineError
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import NodeProgress, read_answers
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

from .local.kafka_fixtures import LocalBroker, broker_unavailable, kafka_libs

SMALL: dict[str, Any] = {"days": 3, "orders_per_day": 120, "seed": 5}


@dataclass
class Run:
    result: DemoResult
    lines: list[str]
    nodes: list[NodeProgress]


def demo(workdir: Path, **kwargs: Any) -> Run:
    """run_demo with the echoed lines and dbt's progress recorded."""
    lines: list[str] = []
    nodes: list[NodeProgress] = []

    @contextmanager
    def progress() -> Iterator[Callable[[NodeProgress], None]]:
        yield nodes.append

    options = {**SMALL, **kwargs}
    result = run_demo(workdir, dbt_progress=progress, echo=lines.append, **options)
    return Run(result, lines, nodes)


def command(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """Make ``cli.main()`` run ``retail-pipeline demo`` on the small simulation with ``args``."""
    small = [f"--{option.replace('_', '-')}={value}" for option, value in SMALL.items()]
    monkeypatch.setattr(sys, "argv", ["retail-pipeline", "demo", *small, *args])


def truth_of(workdir: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads((workdir / "sim" / "truth.json").read_text())
    return truth


@dataclass
class ModuleRun:
    root: Path
    """The current directory the demo ran in; its workdir is ``root / "demo"``."""
    run: Run

    def copy(self, target: Path) -> Path:
        """A copy of the demo's folder (simulation, warehouse, marker) to go on from."""
        return Path(shutil.copytree(self.root / "demo", target))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> ModuleRun:
    """The demo on its defaults but small, run in a fresh current directory with
    ``RETAIL_WAREHOUSE`` pointing elsewhere (which the demo must not use)."""
    root = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("RETAIL_WAREHOUSE", str(root / "elsewhere.duckdb"))
        run = demo(Path("demo"))
    return ModuleRun(root, run)


# -- 1. a warehouse of its own, one simulation per warehouse ------------------------------------


def test_demo_keeps_a_warehouse_of_its_own_and_says_where(demo_run: ModuleRun) -> None:
    root, result = demo_run.root, demo_run.run.result
    assert result.warehouse == Path("demo/warehouse.duckdb")
    assert (root / "demo" / "warehouse.duckdb").is_file()
    assert (root / "demo" / f"warehouse.duckdb{MARKER_SUFFIX}").is_file()
    # neither the README's default warehouse nor $RETAIL_WAREHOUSE got anything
    assert not (root / "data").exists()
    assert not (root / "elsewhere.duckdb").exists()
    assert "warehouse: demo/warehouse.duckdb (the demo's own" in "\n".join(demo_run.run.lines)
    assert result.where() == (
        "the demo's warehouse is demo/warehouse.duckdb (read it again with"
        " `retail-pipeline answers --warehouse demo/warehouse.duckdb`, or see it in a browser"
        " with `retail-pipeline dashboard --warehouse demo/warehouse.duckdb`)"
    )


def test_rerunning_the_same_demo_loads_nothing_twice(
    demo_run: ModuleRun, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command itself, in place (Bronze knows its files by absolute path)."""
    monkeypatch.chdir(demo_run.root)
    command(monkeypatch, "--workdir", "demo")
    cli.main()  # returns: exit code 0
    lines = capsys.readouterr().out.splitlines()
    events = next(line for line in lines if line.startswith("events: "))
    assert "/ loaded 0 /" in events, events
    assert not any("fresh" in line for line in lines)
    assert lines[-2:] == [
        demo_run.run.result.where(),
        "verdict: all six answers equal the simulation's truth (demo/sim/truth.json)",
    ]
    answers = read_answers(demo_run.root / "demo" / "warehouse.duckdb")
    assert answers == demo_run.run.result.answers


def test_demo_json_prints_only_the_answers_on_stdout(
    demo_run: ModuleRun, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(demo_run.root)
    command(monkeypatch, "--workdir", "demo", "--json")
    cli.main()
    captured = capsys.readouterr()
    answers = json.loads(captured.out)  # stdout is the JSON and nothing else
    assert compare_with_truth(answers, truth_of(demo_run.root / "demo")) == {}
    assert answers == demo_run.run.result.answers
    assert "verdict: all six answers equal the simulation's truth" in captured.err


def bronze_orders(warehouse: Path) -> int:
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        (orders,) = wh.con.execute(
            "select count(distinct order_id) from bronze.order_events"
            " where event_type = 'order_created'"
        ).fetchone() or (0,)
    return int(orders)


def test_another_simulation_gets_a_fresh_demo_warehouse(
    demo_run: ModuleRun, tmp_path: Path
) -> None:
    """Another seed and fewer days into the same workdir: the demo's own warehouse starts
    again instead of adding a second shop to the first (ids of both seeds would merge)."""
    workdir = demo_run.copy(tmp_path / "demo")
    other = demo(workdir, seed=6, days=2)
    assert other.lines[1] == (
        f"warehouse: {workdir / 'warehouse.duckdb'} held another simulation"
        " (seed 5, 3 days x 120 orders/day); starting a fresh one"
    )
    assert other.result.differences == {}
    assert compare_with_truth(other.result.answers, truth_of(workdir)) == {}
    assert other.result.answers != demo_run.run.result.answers
    truth = truth_of(workdir)
    assert bronze_orders(workdir / "warehouse.duckdb") == truth["cancel_refund"]["orders"]
    assert len(list((workdir / "sim" / "snapshots").iterdir())) == 2  # day 3 of seed 5 is gone


def test_a_given_warehouse_holding_something_else_is_refused(
    demo_run: ModuleRun, tmp_path: Path
) -> None:
    workdir = demo_run.copy(tmp_path / "demo")
    warehouse = workdir / "warehouse.duckdb"
    before = warehouse.read_bytes()
    with pytest.raises(PipelineError, match=r"holds another demo simulation \(seed 5, 3 days"):
        demo(workdir, seed=6, warehouse=warehouse)
    assert warehouse.read_bytes() == before

    foreign = tmp_path / "mine.duckdb"
    DuckDBWarehouse(foreign).close()
    with pytest.raises(PipelineError, match="holds data the demo did not load"):
        demo(workdir, warehouse=foreign)
    assert not foreign.with_name(foreign.name + MARKER_SUFFIX).exists()


def test_the_command_refuses_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "mine.duckdb"
    DuckDBWarehouse(foreign).close()
    script = shutil.which("retail-pipeline", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run(
        [script, "demo", "--days", "1", "--orders-per-day", "20", "--warehouse", str(foreign)],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: warehouse {foreign} holds data the demo did not load")
    assert len(done.stderr.strip().splitlines()) == 1


# -- 3. progress during the dbt build, and a verdict against the truth --------------------------


def test_demo_reports_dbt_progress_node_by_node(demo_run: ModuleRun) -> None:
    nodes = demo_run.run.nodes
    assert [node.index for node in nodes] == list(range(1, len(nodes) + 1))
    assert nodes[-1].total == len(nodes)
    assert {node.resource_type for node in nodes} >= {"model", "test", "unit_test"}
    lines = demo_run.run.lines
    assert "dbt: building Silver and Gold (models, data tests, unit tests)" in lines


def test_demo_verdict_compares_the_six_answers_with_the_truth(demo_run: ModuleRun) -> None:
    result = demo_run.run.result
    assert result.truth_file == Path("demo/sim/truth.json")
    assert result.matches_truth
    assert compare_with_truth(result.answers, truth_of(demo_run.root / "demo")) == {}
    assert result.verdict() == (
        "verdict: all six answers equal the simulation's truth (demo/sim/truth.json)"
    )

    answers = json.loads(json.dumps(result.answers))
    answers["revenue"]["net"] = str(Decimal(answers["revenue"]["net"]) + Decimal("0.01"))
    answers["top_products"].reverse()
    differences = compare_with_truth(answers, truth_of(demo_run.root / "demo"))
    wrong = DemoResult(answers, result.warehouse, result.truth_file, differences)
    assert not wrong.matches_truth
    verdict = wrong.verdict().splitlines()
    assert verdict[0] == (
        "verdict: 2 of the six answers differ from the simulation's truth (demo/sim/truth.json):"
        " revenue, top products"
    )
    assert verdict[1].startswith("  revenue.net is ")
    assert verdict[2].startswith("  top_products[0].product_id is ")


def test_the_command_exits_non_zero_when_the_answers_differ(
    demo_run: ModuleRun, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = demo_run.run.result
    answers = json.loads(json.dumps(result.answers))
    answers["orders_per_day"][0]["orders"] += 1
    differences = compare_with_truth(answers, truth_of(demo_run.root / "demo"))
    wrong = DemoResult(answers, result.warehouse, result.truth_file, differences)
    monkeypatch.setattr("retail_pipeline.demo.run_demo", lambda *_, **__: wrong)
    command(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    orders = truth_of(demo_run.root / "demo")["orders_per_day"][0]["orders"]
    assert out.splitlines()[-2:] == [
        "verdict: 1 of the six answers differ from the simulation's truth (demo/sim/truth.json):"
        " orders per day",
        f"  orders_per_day[0].orders is {orders + 1}, truth {orders}",
    ]
    assert err.strip() == "error: the demo's answers differ from demo/sim/truth.json"


# -- 4. every option says what it is for ----------------------------------------------------


def test_every_demo_option_has_help() -> None:
    import typer

    group: Any = typer.main.get_command(cli.app)
    options = {
        param.name: getattr(param, "help", None)
        for param in group.commands["demo"].params
        if param.param_type_name == "option" and param.name != "help"
    }
    assert options.keys() == {
        "workdir",
        "days",
        "orders_per_day",
        "seed",
        "kafka",
        "warehouse",
        "target",
        "as_json",
    }
    assert all(options.values()), options
    assert "RETAIL_WAREHOUSE is not used" in (options["warehouse"] or "")
    assert "RETAIL_TARGET and SNOWFLAKE_* are not used" in (options["target"] or "")


# -- 4. the Snowflake target: the same demo on a local Snowflake it starts and stops -------------


def test_demo_on_snowflake_prints_the_same_answers_as_on_duckdb(
    demo_run: ModuleRun, tmp_path: Path
) -> None:
    """``demo --target snowflake --json`` in a process of its own (the emulator's database
    lives as long as the process): same seed, same answers JSON as the DuckDB demo, equal to
    the truth; settings naming a real account are ignored, and the emulator is stopped."""
    from retail_pipeline.local import snowflake_emulator as emulator

    from .local.snowflake_fixtures import emulator_unavailable

    reason = emulator.available()
    if reason:
        emulator_unavailable(reason)
    script = shutil.which("retail-pipeline", path=str(Path(sys.executable).parent))
    assert script is not None
    small = [f"--{option.replace('_', '-')}={value}" for option, value in SMALL.items()]
    account = {  # a deployment's settings: the demo must not touch them
        "RETAIL_TARGET": "duckdb",
        "SNOWFLAKE_ACCOUNT": "real-account",
        "SNOWFLAKE_HOST": "192.0.2.1",
        "SNOWFLAKE_DATABASE": "PRODUCTION",
    }
    done = subprocess.run(
        [script, "demo", *small, "--target", "snowflake", "--json", "--workdir", "demo"],
        cwd=tmp_path,
        env={**os.environ, **account, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)  # stdout is the JSON and nothing else
    assert answers == demo_run.run.result.answers
    assert compare_with_truth(answers, truth_of(tmp_path / "demo")) == {}
    log = done.stderr
    assert (
        "warehouse: database RETAIL on a local Snowflake emulator (snowduck) at 127.0.0.1:" in log
    )
    assert "warehouse: stopped the local Snowflake emulator" in log
    assert "verdict: all six answers equal the simulation's truth" in log
    assert "Warning" not in log
    assert not (tmp_path / "demo" / "warehouse.duckdb").exists()
    assert not (tmp_path / "demo" / "snowflake" / "stage").exists()


def test_the_snowflake_demo_takes_no_duckdb_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="--warehouse names a DuckDB file"):
        run_demo(tmp_path, target="snowflake", warehouse=tmp_path / "x.duckdb", **SMALL)
    with pytest.raises(PipelineError, match="unknown target 'oracle'"):
        run_demo(tmp_path, target="oracle", **SMALL)


# -- 2. through Kafka: stop the broker the demo started, leave alone one that was running -------


def is_running(local: LocalBroker) -> bool:
    return broker.status(local.home) is not None


@pytest.mark.kafka
def test_demo_through_kafka_stops_only_the_broker_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalBroker(home=tmp_path / "kafka", libs=kafka_libs())

    def start() -> broker.BrokerInfo:
        try:
            return local.start()
        except broker.BrokerError as exc:  # skipped here, failed under CI=true
            broker_unavailable(str(exc))

    # The operator's properties are another cluster's (SASL_SSL): the demo's clients of its own
    # plaintext broker must not use them, and they are the operator's again afterwards.
    other = tmp_path / "other-cluster.properties"
    other.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\n"
        "sasl.username=someone\nsasl.password=elsewhere\n"
    )
    other.chmod(0o600)
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(other))
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_SECURITY_PROTOCOL", "SASL_SSL")
    workdir = tmp_path / "demo"
    options: dict[str, Any] = {"days": 2, "orders_per_day": 100, "seed": 6, "kafka": True}
    first = demo(workdir, start_broker=start, **options)
    assert first.result.matches_truth, first.result.differences
    assert os.environ["RETAIL_KAFKA_CONFIG_FILE"] == str(other)
    assert os.environ["RETAIL_KAFKA_CONFIG_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert not is_running(local)
    assert any(
        line.startswith("kafka: stopped the broker the demo started") for line in first.lines
    )

    from retail_pipeline.ingestion.kafka.consumer import KafkaBronzeConsumer

    def interrupted(*_: Any, **__: Any) -> NoReturn:
        assert is_running(local)
        raise KeyboardInterrupt  # Ctrl-C while consuming

    monkeypatch.setattr(KafkaBronzeConsumer, "run", interrupted)
    local.start()  # running before the demo: used, and left running even on Ctrl-C
    try:
        with pytest.raises(KeyboardInterrupt):
            demo(workdir, start_broker=start, **options)
        assert is_running(local)
    finally:
        local.stop()
    with pytest.raises(KeyboardInterrupt):  # started by the demo: stopped on Ctrl-C too
        demo(workdir, start_broker=start, **options)
    assert not is_running(local)
