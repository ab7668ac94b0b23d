"""Benchmark: Kafka → Bronze against the raw consume rate and DuckDB's read_ndjson.

Prints figures, asserts nothing. Starts its own broker (same machine), publishes a cached
simulation (faults on, ~380 bytes per event), then measures in one run:

1. raw consume rate: a confluent-kafka consumer that only counts messages (no sink);
2. Kafka → Bronze: ``KafkaBronzeConsumer`` until caught up (fresh process: peak RSS is its own);
3. DuckDB ``read_ndjson`` of the same events from the files (the sink's limit);
4. freshness: events paced at ``--rate`` msgs/s while a consumer runs; per message, the time
   from its Kafka timestamp (set when produced) to the commit of the Bronze transaction
   holding it; p50 and p99.

    python bench/kafka_ingest.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_files import ROOT, CpuWatch, load, measure, simulate
from retail_pipeline.local import kafka_broker as broker

TOPICS = ("orders", "payments", "shipments", "dead_letter")


def raw_consume(bootstrap: str, prefix: str, total: int) -> float:
    """Seconds to read ``total`` messages with no sink."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "queued.max.messages.kbytes": 131_072,
        }
    )
    consumer.subscribe([prefix + t for t in TOPICS[:3]])
    seen, started = 0, None
    while seen < total:
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error() is None:
                started = started or time.perf_counter()
                seen += 1
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seconds


def child_consume(bootstrap: str, prefix: str, warehouse: str) -> None:
    """Kafka → Bronze until caught up; prints JSON with rate and peak RSS."""
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.warehouse import open_warehouse

    settings = ConsumerSettings(bootstrap=bootstrap, topic_prefix=prefix, group_id=prefix)
    with CpuWatch() as watch:
        consumer = KafkaBronzeConsumer(open_warehouse(warehouse, target="duckdb"), settings)
        summary = consumer.run(until_caught_up=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"messages": summary.read, "seconds": summary.seconds, "peak_rss_mib": peak}
    print(json.dumps(figures | watch.figures()))


def freshness(bootstrap: str, files: list[Path], rate: float, seconds: float) -> list[float]:
    """Per-message produced → committed latencies (seconds) at a paced rate."""
    import pyarrow.compute as pc

    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.warehouse import open_warehouse

    prefix = f"fresh-{uuid.uuid4().hex[:6]}."
    broker.ensure_topics(bootstrap, [prefix + t for t in TOPICS], partitions=3)
    sample = Path(tempfile.mkdtemp()) / "sample.ndjson"
    needed = int(rate * seconds)
    with sample.open("wb") as out:
        written = 0
        for path in files:
            for line in path.open("rb"):
                out.write(line)
                written += 1
                if written >= needed:
                    break
            if written >= needed:
                break
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        wh = open_warehouse(Path(tmp) / "wh.duckdb", target="duckdb")
        write = wh.write_events

        def timed_write(batch):  # type: ignore[no-untyped-def]
            result = write(batch)
            committed = time.time()
            stamps = [
                us
                for table in [*batch.events.values(), batch.dead_letters]
                for us in pc.cast(table.column("_kafka_ts"), "int64").to_pylist()
            ]
            latencies.extend(committed - us / 1e6 for us in stamps if us is not None)
            return result

        wh.write_events = timed_write  # type: ignore[method-assign]
        settings = ConsumerSettings(
            bootstrap=bootstrap, topic_prefix=prefix, group_id=prefix, linger_ms=200
        )
        consumer = KafkaBronzeConsumer(wh, settings)
        stop = threading.Event()
        runner = threading.Thread(target=lambda: consumer.run(stop=stop))
        runner.start()
        time.sleep(5)  # let the consumer join the group before the stream starts
        subprocess.run(  # a separate process, as a real producer would be: no shared GIL
            [
                sys.executable,
                "-m",
                "retail_pipeline.cli",
                "produce",
                str(sample),
                "--rate",
                str(rate),
                "--bootstrap",
                bootstrap,
                "--topic-prefix",
                prefix,
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 60
        while len(latencies) < written and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        runner.join()
        wh.close()
    return sorted(latencies)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--fresh-seconds", type=float, default=30)
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--child", nargs=3, metavar=("BOOTSTRAP", "PREFIX", "WAREHOUSE"))
    args = parser.parse_args()
    if args.child:
        child_consume(*args.child)
        return

    from retail_pipeline.ingestion.kafka.producer import produce_files

    files = simulate(args.cache, args.events, args.seed)
    home = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    libs = broker.ensure_jars(broker.default_home())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    info = broker.start(home, port=port, libs=libs, die_with_parent=True)
    try:
        bootstrap = info.bootstrap_servers
        prefix = f"bench-{uuid.uuid4().hex[:6]}."
        broker.ensure_topics(bootstrap, [prefix + t for t in TOPICS], partitions=3)
        produced = produce_files(files, bootstrap=bootstrap, topic_prefix=prefix)
        total = produced.delivered
        print(
            f"produced {total:,} messages in {produced.seconds:.1f} s"
            f" ({total / produced.seconds:,.0f} msgs/s, idempotent, acks=all)"
        )
        print(f"before measuring: {load()}")
        before = time.process_time()
        raw = raw_consume(bootstrap, prefix, total)
        raw_cpu = time.process_time() - before
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--child", bootstrap, prefix, f"{tmp}/wh.duckdb"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            sink = json.loads(out.strip().splitlines()[-1])
        limit = measure("read_ndjson", files, 8)
        rows = [
            ("raw consume (no sink)", total, raw, None),
            ("Kafka -> Bronze", sink["messages"], sink["seconds"], sink["peak_rss_mib"]),
            (
                "read_ndjson (sink limit)",
                limit["messages"],
                limit["seconds"],
                limit["peak_rss_mib"],
            ),
        ]
        for name, n, seconds, rss in rows:
            rss_text = f"  peak RSS {rss:,.0f} MiB" if rss else ""
            print(
                f"{name:<26} {n:>10,.0f} msgs {seconds:7.2f} s {n / seconds:>10,.0f} msgs/s"
                + rss_text
            )
        print(
            f"Kafka -> Bronze CPU: consumer {sink['cpu_s']:.1f} s, validation worker"
            f" {sink['workers_cpu_s']:.1f} s; raw consume {raw_cpu:.1f} s"
            f" (on {os.cpu_count()} cores beside the broker)"
        )
        lat = freshness(bootstrap, files, args.rate, args.fresh_seconds)
        print(
            f"freshness at {args.rate:,.0f} msgs/s (linger 200 ms): {len(lat):,} msgs,"
            f" p50 {percentile(lat, 0.5):.3f} s, p99 {percentile(lat, 0.99):.3f} s"
        )
        print(f"after: {load()}")
        print("targets: >=100k msgs/s and >=60% of raw consume, p99 freshness <=2 s,")
        print("         consumer RSS <=1.5 GiB")
    finally:
        broker.stop(home)


if __name__ == "__main__":
    main()
