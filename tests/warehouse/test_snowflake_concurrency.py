"""Concurrent loaders on Snowflake (the fakesnow emulator): fenced per source partition, so the
loaders of different partitions copy in parallel and the writers of one partition still load it
exactly once.

- Two writers racing on one file source, both with their COPYs done when they take the fence:
  one commits, the other gets PositionConflict and nothing of its batch stays (rows, position,
  load record, fence); a third writer, of another file, commits beside them.
- Two consumer processes of one Kafka group, each running ``retail-pipeline ingest --kafka
  --target snowflake`` at the same time: every message exactly once, the positions at the
  topics' ends, both members loaded, and their batches' COPYs overlap in time (each batch's
  COPY interval is printed, from the warehouse's DEBUG records).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retail_pipeline.ingestion.files import stage_block
from retail_pipeline.ingestion.kafka.producer import Delivered, produce_files
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.local.snowflake_emulator import endpoint_settings
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse.base import EventBatch, Position, PositionConflict, WriteResult
from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse, fence_key

REPO = Path(__file__).resolve().parents[2]
EVENT_TOPICS = ("orders", "payments", "shipments")
KEYS_SQL = """
    select _topic, _partition, _offset, _load_id from bronze.order_events
    union all select _topic, _partition, _offset, _load_id from bronze.payment_events
    union all select _topic, _partition, _offset, _load_id from bronze.shipment_events
    union all select _topic, _partition, _offset, _load_id from bronze.dead_letter
"""


def opened(args: dict[str, Any], **extra: Any) -> SnowflakeWarehouse:
    """A warehouse on ``args``' database, ``extra`` over the connect arguments."""
    args = {**args, **extra}
    return SnowflakeWarehouse(args, database=args.pop("database"))


# -- two writers, one source -------------------------------------------------------------------


class Racing(SnowflakeWarehouse):
    """A writer whose first fence waits until both racers have copied their batch: both
    transactions are open, their COPYs done, when the fences are taken."""

    copied = threading.Barrier(2)
    raced = False

    def _fence(self, cur: Any, keys: Sequence[str], load_id: str) -> None:
        if not self.raced:
            self.raced = True
            self.copied.wait(timeout=60)
        super()._fence(cur, keys, load_id)


def test_two_writers_of_one_source_one_commits_the_other_is_refused(
    snowflake_args: dict[str, Any], tmp_path: Path
) -> None:
    """run-0 and run-1 load the same orders file from its start; run-2 loads the payments file
    at the same time: the fence decides per source, so run-2 commits whatever the other two do."""
    sim = generate(tmp_path / "sim", days=1, orders_per_day=30, seed=4, faults=FaultRates())
    orders, payments = (sim.out_dir / "events" / f"{t}.ndjson" for t in ("orders", "payments"))

    def batch(load_id: str, path: Path) -> EventBatch:
        data, source = path.read_bytes(), f"file:{path}"
        staged = stage_block(data, 0, 1, str(path))
        end = Position(source, 0, len(data), len(data.splitlines()) + 1, "fp")
        return EventBatch(
            load_id, "file", staged.events, staged.dead_letters, [end], {(source, 0): None}
        )

    # A short network timeout: fakesnow fails the loser's fence at once (HTTP 500, which the
    # connector retries until this runs out) where Snowflake would make it wait for the winner.
    Racing.copied = threading.Barrier(3)
    args = {**snowflake_args, "network_timeout": 2}
    database = args.pop("database")
    writers = [Racing(args, database=database) for _ in range(3)]
    outcomes: dict[str, WriteResult | Exception] = {}

    def write(wh: SnowflakeWarehouse, load_id: str, path: Path) -> None:
        try:
            outcomes[load_id] = wh.write_events(batch(load_id, path))
        except Exception as exc:  # what each writer got is what the test checks
            outcomes[load_id] = exc

    files = [orders, orders, payments]
    threads = [
        threading.Thread(target=write, args=(wh, f"run-{n}", path))
        for n, (wh, path) in enumerate(zip(writers, files, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    refused = [run for run, got in outcomes.items() if isinstance(got, PositionConflict)]
    committed = [run for run, got in outcomes.items() if isinstance(got, WriteResult)]
    assert len(refused) == 1 and len(committed) == 2 and "run-2" in committed, outcomes
    [winner] = set(committed) - {"run-2"}
    wh = writers[0]
    counts = wh.counts()
    lines = {path: len(path.read_bytes().splitlines()) for path in (orders, payments)}
    assert counts["order_events"] + counts["payment_events"] + counts["dead_letter"] == sum(
        lines.values()
    )  # each line once
    assert {row[-1] for row in wh.query(KEYS_SQL)} == {winner, "run-2"}
    assert wh.query("select distinct _load_id from bronze.order_events") == [(winner,)]
    for path, run in ((orders, winner), (payments, "run-2")):
        source = f"file:{path}"
        assert wh.positions(source)[0].next_offset == path.stat().st_size
        fence = fence_key(source, 0)
        assert wh.query("select value from bronze._meta where key = ?", [fence]) == [(run,)]
    assert sorted(wh.query("select load_id from bronze._loads")) == sorted([(winner,), ("run-2",)])
    for writer in writers:
        writer.close()


# -- two consumer processes, one group ---------------------------------------------------------


def member(env: dict[str, str], bootstrap: str, prefix: str, name: str) -> subprocess.Popen[str]:
    """``retail-pipeline ingest --kafka --target snowflake`` as one member of the group."""
    command = [
        *(sys.executable, "-m", "tests.warehouse.snowflake_member", "ingest", "--kafka"),
        *("--target", "snowflake", "--bootstrap", bootstrap, "--topic-prefix", prefix),
        *("--group", f"g-{prefix}", "--instance-id", name, "--until-caught-up"),
        *("--batch-size", "300", "--linger-ms", "50"),
    ]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def overlapping(intervals: dict[int, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The spans where a COPY of one process ran while a COPY of the other did."""
    first, second = intervals.values()
    return [
        (max(a0, b0), min(a1, b1)) for a0, a1 in first for b0, b1 in second if a0 < b1 and b0 < a1
    ]


def test_two_consumers_of_one_group_load_in_parallel_exactly_once(
    kafka_broker: str, snowflake_args: dict[str, Any], tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    broker.ensure_topics(kafka_broker, [prefix + t for t in (*EVENT_TOPICS, "dead_letter")])
    sim = generate(tmp_path / "sim", days=2, orders_per_day=600, seed=21, faults=FaultRates())
    delivered: list[Delivered] = []
    files = sorted((sim.out_dir / "events").glob("*.ndjson"))
    produce_files(files, bootstrap=kafka_broker, topic_prefix=prefix, on_delivered=delivered.append)
    timings = tmp_path / "timings.jsonl"
    args = snowflake_args
    env = {
        **os.environ,
        "RETAIL_TARGET": "snowflake",
        "RETAIL_TEST_COPY_SECONDS": "0.2",
        "RETAIL_TEST_TIMINGS": str(timings),
        **endpoint_settings(args, args["database"]),
        "SNOWFLAKE_LOGIN_TIMEOUT": str(args["network_timeout"]),
    }
    with opened(args) as wh:  # Bronze is there before the members start (as Terraform makes it)
        members = [member(env, kafka_broker, prefix, name) for name in ("member-a", "member-b")]
        read = 0
        for process in members:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err[-3000:]
            summary = out.strip().splitlines()[-1]
            print(summary)
            read += int(summary.split()[1].replace(",", ""))
        rows = wh.query(KEYS_SQL)
        positions = {(p.source, p.partition): p.next_offset for p in wh.all_positions()}
    keys = [(topic, int(part), int(offset)) for topic, part, offset, _ in rows]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} messages twice in Bronze"
    produced = {(d.topic.removeprefix(prefix), d.partition, d.offset) for d in delivered}
    assert set(keys) == produced, f"{len(produced - set(keys))} messages not in Bronze"
    assert read == len(produced)  # what the members say they committed is what is there
    ends: dict[tuple[str, int], int] = {}
    for d in delivered:  # the positions' sources name the topics on the broker
        key = (f"kafka:{d.topic}", d.partition)
        ends[key] = max(ends.get(key, 0), d.offset + 1)
    assert positions == ends
    assert len({load_id for *_, load_id in rows}) == 2  # both members loaded

    intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
    lines = [json.loads(line) for line in timings.read_text().splitlines()]
    for line in lines:
        intervals[line["pid"]].append((line["copy_started"], line["copy_finished"]))
    assert len(intervals) == 2, f"batch timings from {len(intervals)} processes"
    t0 = min(start for spans in intervals.values() for start, _ in spans)
    for pid, spans in intervals.items():
        shown = ", ".join(f"{a - t0:.3f}-{b - t0:.3f}" for a, b in sorted(spans))
        print(f"process {pid}: {len(spans)} batches, COPY intervals (s): {shown}")
    both = overlapping(intervals)
    print(f"{len(both)} overlaps: " + ", ".join(f"{a - t0:.3f}-{b - t0:.3f}" for a, b in both))
    assert both, "no COPY of one member ran while a COPY of the other did"
