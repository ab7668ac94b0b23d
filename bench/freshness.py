"""Benchmark: continuous freshness of ``retail-pipeline run``, event produced -> counted in Gold.

Prints figures, asserts nothing. Starts its own broker, loads the simulation's reference data,
starts ``retail-pipeline run --dashboard`` (a process of its own, as deployed), then produces
the simulation's events, in event-time order, at a steady ``--rate`` for ``--minutes``.

The measure, per order: the producer records when each order's first ``order_created`` was
produced (orders of one day are created in event-time order, so the k-th order of a day is
the k-th produced). A poller asks the run's dashboard (``/api/data``, which re-reads Gold
within a second of each build) every 0.25 s for Gold's orders per day; the first time day d
counts k orders, the first k orders of d are visible, and each gets *that poll time - its
produce time*. p50/p99 over every order produced; an order not in Gold when the wait ends
(``--drain`` seconds after the last produce) is reported as missing. The RSS of ``run`` (loader
and builder, one process, plus its validation worker) is sampled every poll; its peak and the
kernel's high-water mark are printed.

    python bench/freshness.py --minutes 1                 # 2,000 events/s for a minute
    python bench/freshness.py --rate 20000 --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_files import ROOT
from retail_pipeline.local import kafka_broker as broker

TOPICS = ("orders", "payments", "shipments", "dead_letter")


def clean_simulation(cache: Path, events: int, seed: int) -> list[Path]:
    """A simulation (cached) of at least ``events`` lines without faults: every order_created
    is valid and counted once, so each produced order must reach Gold."""
    from retail_pipeline.simulation import generate

    days = 30
    target = cache / f"fresh-sim-{events}-{seed}"
    if not (target / "done").exists():
        orders = max(1, round(events / days / 5.0))
        generate(target, days=days, orders_per_day=orders, seed=seed, faults=None)
        (target / "done").touch()
    return sorted((target / "events").glob("*.ndjson"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def events_in_order(files: list[Path], limit: int) -> list[tuple[str, bytes, bytes | None]]:
    """The first ``limit`` events by event time: (topic, line, key); malformed lines keep
    their place after the event before them (they still travel, as in the simulation)."""
    from retail_pipeline.ingestion.kafka.producer import route

    rows: list[tuple[str, int, str, bytes, bytes | None]] = []
    for path in files:
        for number, line in enumerate(path.read_bytes().split(b"\n")):
            if not line.strip():
                continue
            topic, key, _ = route(line, "dead_letter")
            try:
                stamp = str(orjson.loads(line).get("event_timestamp") or "")
            except (orjson.JSONDecodeError, AttributeError):
                stamp = ""
            rows.append((stamp, number, topic, line, key))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [(topic, line, key) for _, _, topic, line, key in rows[:limit]]


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS of ``pid`` and its children, the high-water mark of ``pid``) in MiB."""
    import psutil

    try:
        proc = psutil.Process(pid)
        rss = proc.memory_info().rss + sum(
            child.memory_info().rss for child in proc.children(recursive=True)
        )
        hwm = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
        return rss / (1 << 20), hwm
    except (psutil.Error, OSError):
        return 0.0, 0.0


def kafka_lag(port: int) -> float:
    """The consumer's lag now, summed over partitions (``retail_kafka_lag_messages``, which
    the loader refreshes every 2 s), from the run's ``/metrics``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("retail_kafka_lag_messages{")
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=2000, help="events per second")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--build-delay", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to wait at the end")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()

    total = int(args.rate * args.minutes * 60)
    files = clean_simulation(args.cache, total, args.seed)
    sim_dir = files[0].parent.parent
    events = events_in_order(files, total)
    print(f"{len(events):,} events to produce at {args.rate:,.0f}/s ({args.minutes:g} min)")

    home = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    libs = broker.ensure_jars(broker.default_home())
    info = broker.start(home, port=free_port(), libs=libs, die_with_parent=True)
    run = None
    try:
        bootstrap = info.bootstrap_servers
        prefix = f"fresh-{uuid.uuid4().hex[:6]}."
        broker.ensure_topics(bootstrap, [prefix + t for t in TOPICS], partitions=3)
        warehouse = home / "wh.duckdb"
        env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse)}
        cli = [sys.executable, "-m", "retail_pipeline.cli"]
        for entity in ("customers", "products"):
            subprocess.run(
                [*cli, "load-batch", f"--{entity}", str(sim_dir / f"{entity}.json")],
                env=env,
                check=True,
                capture_output=True,
            )
        port = free_port()
        kafka = ["--bootstrap", bootstrap, "--topic-prefix", prefix, "--group", prefix]
        options = ["--build-delay", str(args.build_delay), "--dashboard", "--port", str(port)]
        run = subprocess.Popen(
            [*cli, "run", *kafka, *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output: list[str] = []

        def keep_output() -> None:
            assert run is not None and run.stdout is not None
            for line in run.stdout:
                output.append(line.rstrip())

        threading.Thread(target=keep_output, daemon=True).start()
        while not any(line.startswith("dashboard: ") for line in output):  # first build done
            if run.poll() is not None:
                raise SystemExit("\n".join(output))
            time.sleep(0.2)

        produced: dict[str, list[float]] = defaultdict(list)  # order date -> produce times
        seen: set[str] = set()
        done = threading.Event()

        def produce() -> None:
            from confluent_kafka import Producer

            from retail_pipeline.ingestion.kafka.producer import producer_config

            producer = Producer(producer_config(bootstrap))
            started = time.perf_counter()
            for sent, (topic, line, key) in enumerate(events):
                delay = started + sent / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                while True:
                    try:
                        producer.produce(prefix + topic, line, key)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
                if b'"order_created"' in line:
                    try:
                        event = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    order = event.get("order_id")
                    if event.get("event_type") == "order_created" and order not in seen:
                        seen.add(order)
                        day = str(event.get("event_timestamp", ""))[:10]
                        produced[day].append(time.time())
            producer.flush(60)
            done.set()

        producer_thread = threading.Thread(target=produce, daemon=True)
        producer_thread.start()
        visible_at: dict[str, list[float]] = defaultdict(list)  # day -> time k-th order seen
        peak_rss = 0.0
        hwm = 0.0
        max_lag = 0.0
        url = f"http://127.0.0.1:{port}/api/data"
        deadline = None
        while True:
            now = time.time()
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    figures = json.loads(response.read())["figures"]
            except OSError:
                figures = {"orders_per_day": []}
            for row in figures["orders_per_day"]:
                day, count = row["date"], int(row["orders"])
                while len(visible_at[day]) < count:
                    visible_at[day].append(now)
            max_lag = max(max_lag, kafka_lag(port))
            rss, hwm = rss_mib(run.pid)
            peak_rss = max(peak_rss, rss)
            if done.is_set():
                deadline = deadline or time.monotonic() + args.drain
                if all(len(visible_at[d]) >= len(t) for d, t in produced.items()):
                    break
                if time.monotonic() > deadline:
                    break
            time.sleep(0.25)

        latencies: list[float] = []
        missing = 0
        for day, times in produced.items():
            seen_at = visible_at[day]
            for k, t in enumerate(times):
                if k < len(seen_at):
                    latencies.append(max(0.0, seen_at[k] - t))
                else:
                    missing += 1
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=600)
        for line in output:
            if any(mark in line for mark in (": failed: ", "not run", "build failed", "FAILED")):
                print(line)
        retried = [line for line in output if line.startswith("loader: ")]
        if retried:  # a batch refused for memory while a build held it, written again after
            print(f"loader: {len(retried)} batches written again after a build; {retried[0]}")
        builds = [line for line in output if line.startswith("build ") and "): " in line]
        build_seconds = [
            float(line.split(" ok in ")[1].split("s;")[0]) for line in builds if " ok in " in line
        ]
        load = os.getloadavg()
        print(
            f"orders: {len(latencies):,} in Gold, {missing:,} missing after {args.drain:g} s;"
            f" produce -> Gold p50 {percentile(latencies, 0.5):.1f} s,"
            f" p99 {percentile(latencies, 0.99):.1f} s, max {max(latencies or [0]):.1f} s"
        )
        print(
            f"builds: {len(builds)} (build delay {args.build_delay:g} s), dbt build"
            f" p50 {percentile(build_seconds, 0.5):.1f} s, max {max(build_seconds or [0]):.1f} s"
        )
        print(
            f"run process (loader + builder) RSS: peak sampled {peak_rss:,.0f} MiB"
            f" (with its validation worker), high-water mark {hwm:,.0f} MiB"
        )
        print(
            f"Kafka -> Bronze while building: max consumer lag {max_lag:,.0f} messages"
            f" ({max_lag / args.rate:.1f} s of produce); a loader stalled by the longest build"
            f" would lag {min(args.rate * max(build_seconds or [0]), len(events)):,.0f}"
        )
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print("targets: p99 <= 30 s at 2,000 events/s, <= 60 s at 20,000/s; RSS <= 1.5 GiB")
        print(output[-1] if output else "")
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        broker.stop(home)


if __name__ == "__main__":
    main()
