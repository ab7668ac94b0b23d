"""Ctrl-C: every command says "aborted" on one line and exits 130, and what it was writing is
either committed whole or not at all, so running it again finishes the job.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group (validation workers
included), so the tests start each command in a session of its own and signal the group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from tests.accounting import message_lines, stored_messages, unaccounted_rows
from tests.cli.run import COMMAND, cli, ok

pytestmark = pytest.mark.timing  # signals at chosen moments: `make test` runs it alone


def interrupted(*args: str | Path, after: float, warehouse: Path, cwd: Path) -> str:
    """Run a command on ``warehouse``, press Ctrl-C after ``after`` seconds; check it says
    "aborted" and exits 130, and return its stdout."""
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse)}
    proc = subprocess.Popen(
        [*COMMAND, *map(str, args)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(after)
    assert proc.poll() is None, f"finished before Ctrl-C: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # Its output too: a run that ends 0 after the signal says how far it got.
    assert proc.returncode == 130, f"exit {proc.returncode}; stdout {out!r}; stderr {err!r}"
    assert err.splitlines() == ["aborted"], err
    return out


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    return generate(
        tmp_path_factory.mktemp("interrupt-sim"),
        days=3,
        orders_per_day=400,
        seed=21,
        faults=FaultRates(),
    )


@pytest.mark.slow  # ~200 MB of events to interrupt, then to load whole
def test_ctrl_c_during_ingest(
    sim: GenerationSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~200 MB of events (the simulation's lines again and again) validated by one worker: many
    # seconds of loading, so the Ctrl-C lands mid-load even when start-up is quick (with less,
    # a fast run had finished loading and was exiting when the signal came).
    monkeypatch.setenv("RETAIL_VALIDATION_WORKERS", "1")
    lines = [sim.topics[t].path.read_bytes() for t in ("orders", "payments", "shipments")]
    big = tmp_path / "events.ndjson"
    with big.open("wb") as handle:
        for _ in range(80):
            handle.writelines(lines)
    total = message_lines([big])
    warehouse = tmp_path / "wh.duckdb"

    # At several moments: while the validation workers start (a Ctrl-C then once left a
    # traceback of a half-started worker beside "aborted") and mid-load.
    for after in (0.7, 1.1, 1.5, 2.5):
        args = ("ingest", "--batch-mb", "4", big)
        interrupted(*args, after=after, warehouse=warehouse, cwd=tmp_path)
        # what was committed is whole and recorded (a Ctrl-C during start-up, before the
        # warehouse exists, wrote nothing at all: a fresh clone starts slower)
        assert not warehouse.exists() or unaccounted_rows(warehouse) == []

    ok(cli("ingest", big, warehouse=warehouse, cwd=tmp_path))
    assert stored_messages(warehouse) == total
    assert unaccounted_rows(warehouse) == []


def test_ctrl_c_during_transform(sim: GenerationSummary, tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    events = [sim.topics[t].path for t in ("orders", "payments", "shipments")]
    ok(cli("ingest", *events, warehouse=warehouse, cwd=tmp_path))
    # dbt importing, parsing (where dbt once swallowed the interrupt and built on, or turned it
    # into an error of its own) and building: every stage must end the same way.
    for after in (1.5, 3.2, 5.0):
        interrupted("transform", after=after, warehouse=warehouse, cwd=tmp_path)
    lines = ok(cli("transform", warehouse=warehouse, cwd=tmp_path))
    assert lines[-1].startswith("dbt build ok")


SWALLOWED = """
import gc, os, signal, sys
from retail_pipeline import cli

class Collected:
    def __del__(self):
        # Python runs the SIGINT handler here, inside __del__, and ignores its exception
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(1000))

@cli.app.command("swallow")
def swallow() -> None:
    Collected()
    gc.collect()
    print("ran to the end")

sys.argv = ["retail-pipeline", "swallow"]
cli.main()
"""


def test_a_ctrl_c_python_swallows_still_aborts(tmp_path: Path) -> None:
    # CI once pressed Ctrl-C while an import lock's weakref callback ran: Python printed
    # "Exception ignored ..." and the ingest loaded everything and exited 0. The signal is
    # remembered, so the command still says "aborted" and exits 130.
    proc = subprocess.run(
        [sys.executable, "-c", SWALLOWED],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Exception ignored" in proc.stderr  # the exception really was swallowed
    assert proc.returncode == 130, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.splitlines()[-1] == "aborted"


def test_ctrl_c_during_generate(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    interrupted(
        "generate",
        "--out",
        out,
        "--days",
        "400",
        after=2.0,
        warehouse=tmp_path / "wh",
        cwd=tmp_path,
    )


@pytest.mark.kafka
def test_ctrl_c_during_kafka_ingest_finishes_the_batch_then_aborts(
    kafka_broker: str, sim: GenerationSummary, tmp_path: Path
) -> None:
    from retail_pipeline.events.contract import TOPICS
    from retail_pipeline.local.kafka_broker import ensure_topics

    prefix = f"interrupt-{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_broker, [prefix + t for t in (*TOPICS, "dead_letter")])
    events = [sim.topics[t].path for t in ("orders", "payments", "shipments")]
    kafka = ("--bootstrap", kafka_broker, "--topic-prefix", prefix)
    warehouse = tmp_path / "wh.duckdb"
    sent = ok(cli("produce", *kafka, *events, warehouse=warehouse, cwd=tmp_path))
    total = message_lines(events)
    assert sent[-1].startswith(f"sent {total:,} / delivered {total:,}")

    # A consumer without --until-caught-up runs until stopped: Ctrl-C is how it ends (after
    # start-up, the group join and the whole small backlog).
    out = interrupted(
        "ingest", "--kafka", *kafka, "--group", prefix, after=8, warehouse=warehouse, cwd=tmp_path
    )
    assert out.startswith("read ") and "(stopped)" in out, out

    # Whatever it read is in Bronze once; a rerun reads the rest, if any.
    rest = ok(
        cli(
            "ingest",
            "--kafka",
            *kafka,
            "--group",
            prefix,
            "--until-caught-up",
            warehouse=warehouse,
            cwd=tmp_path,
        )
    )
    assert "caught up" in rest[-1]
    assert stored_messages(warehouse) == total
    assert unaccounted_rows(warehouse) == []
