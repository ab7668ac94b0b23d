"""Exactly-once consumer: Kafka topics into Bronze.

The offsets of record live in the warehouse (``bronze._positions``, source ``kafka:<topic>``),
written in the same transaction as the rows they cover, through the same
``Warehouse.write_events`` path as file ingestion. On every partition assignment the consumer
seeks to them; offsets are also committed to Kafka after each batch, but only so that lag
tools see progress. Each batch states the positions it expects to find; if another consumer
wrote first (a zombie after a rebalance), the warehouse rejects the batch and this consumer
seeks back to what is stored, so a message is never written twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from retail_pipeline import metrics
from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.ingestion.files import new_load_id
from retail_pipeline.ingestion.kafka.client import (
    DLQ_TOPIC,
    ClientLog,
    admin_config,
    kafka_reason,
    new_client,
    require_topics,
    wait_for_broker,
)
from retail_pipeline.ingestion.kafka.producer import bootstrap_servers
from retail_pipeline.ingestion.observe import LoadObserver, event_rows
from retail_pipeline.ingestion.staging import escaped_text, stage_events
from retail_pipeline.ingestion.workers import Validators
from retail_pipeline.kafka_config import client_config
from retail_pipeline.lineage import kafka_dataset
from retail_pipeline.warehouse.base import (
    EVENT_TABLES,
    EventBatch,
    Position,
    PositionConflict,
    Warehouse,
    WriteResult,
)

log = logging.getLogger(__name__)

__all__ = ["DLQ_TOPIC", "ConsumeSummary", "ConsumerSettings", "KafkaBronzeConsumer"]

MAX_INFLIGHT = 2
"""Batches handed on (being validated or written) and not yet settled."""
WATERMARK_SECONDS = 30.0
"""How long an assignment retries reading a partition's offsets the client cannot read yet."""
_TRANSIENT_WATERMARK_ERRORS = (
    "_UNKNOWN_PARTITION",
    "_TIMED_OUT",
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_FOR_PARTITION",
)
"""librdkafka's errors (``KafkaError`` attributes) of a broker restarting or a partition the
client's metadata does not hold yet."""
LAG_INTERVAL_SECONDS = 2.0
"""How often the consumer asks the broker for its partitions' end offsets (the lag metric)."""


class TopicResetError(PipelineError):
    """The broker's partition no longer matches the stored position (recreated or truncated)."""


@dataclass(frozen=True)
class ConsumerSettings:
    """How to reach Kafka and how to batch."""

    bootstrap: str | None = None
    group_id: str = "retail-bronze"
    instance_id: str | None = None
    """Static group membership: a restarted consumer with the same id takes its partitions back
    at once instead of waiting for the session to time out."""
    topics: Sequence[str] = TOPICS
    """Logical topics (orders, payments, shipments); Bronze's ``_topic`` holds these."""
    topic_prefix: str = ""
    """Put before each topic name on the broker, e.g. ``prod.`` reads ``prod.orders``."""
    batch_size: int = 30_000
    batch_bytes: int = 64 << 20
    """A batch is handed on once it holds this many bytes of message values, whatever its
    count: memory follows the batch, not the size of the messages a topic happens to hold."""
    linger_ms: int = 500
    dlq_topic: str | None = DLQ_TOPIC
    session_timeout_ms: int = 10_000
    validation_workers: int = 1
    """Processes that validate batches (0: validate in the writer thread)."""


@dataclass
class ConsumeSummary:
    """What one consumer run did."""

    read: int = 0
    loaded: int = 0
    dead_lettered: int = 0
    batches: int = 0
    conflicts: int = 0
    transient_errors: int = 0
    dlq_failures: int = 0
    """Dead letters (kept in Bronze) that could not be republished to the dead-letter topic."""
    dlq_failure: str = ""
    seconds: float = 0.0
    stopped_by: str = ""
    positions: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        rate = self.read / self.seconds if self.seconds else 0.0
        return (
            f"read {self.read:,} / loaded {self.loaded:,} / dead-lettered"
            f" {self.dead_lettered:,} in {self.batches:,} batches, {rate:,.0f} msgs/s"
            f" ({self.stopped_by})"
        ) + (
            f"; {self.dlq_failures:,} of them not republished to the dead-letter topic:"
            f" {self.dlq_failure}"
            if self.dlq_failures
            else ""
        )


def _topic_ids(bootstrap: str, topics: Sequence[str]) -> dict[str, str]:
    """Kafka's topic ids, which change when a topic is deleted and created again."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = new_client(AdminClient, admin_config(bootstrap, ClientLog()))
    ids: dict[str, str] = {}
    futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=30)
    for topic, future in futures.items():
        try:
            description = future.result(timeout=30)
        except Exception as exc:
            raise PipelineError(
                f"cannot describe Kafka topic {topic} on {bootstrap}: {kafka_reason(exc)}"
            ) from None
        ids[topic] = str(description.topic_id)
    return ids


def consumer_config(settings: ConsumerSettings, bootstrap: str) -> dict[str, Any]:
    """The Bronze consumer's configuration: the keys exactly-once rests on (offsets of record
    in the warehouse, end-of-partition events) required; fetch sizes and timeouts tunable."""
    required: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }
    if settings.instance_id:
        required["group.instance.id"] = settings.instance_id
    defaults: dict[str, Any] = {
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 5),
        "max.poll.interval.ms": 300_000,
        "fetch.max.bytes": 64 << 20,
        "max.partition.fetch.bytes": 8 << 20,
        "queued.max.messages.kbytes": 16_384,  # per partition: bounds prefetch memory
    }
    return client_config(required, defaults)


def dead_letter_producer_config(bootstrap: str) -> dict[str, Any]:
    """The consumer's dead-letter producer: idempotent, so a retry never writes twice."""
    return client_config({"bootstrap.servers": bootstrap, "enable.idempotence": True})


class KafkaBronzeConsumer:
    """One member of the Bronze consumer group."""

    def __init__(
        self,
        warehouse: Warehouse,
        settings: ConsumerSettings | None = None,
        *,
        load_id: str | None = None,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.warehouse = warehouse
        self.settings = settings or ConsumerSettings()
        self.bootstrap = bootstrap_servers(self.settings.bootstrap)
        self.load_id = load_id or new_load_id("kafka")
        self.physical = [self.settings.topic_prefix + t for t in self.settings.topics]
        self.logical = dict(zip(self.physical, self.settings.topics, strict=True))
        dlq = self.settings.dlq_topic
        needed = [*self.physical, *([self.settings.topic_prefix + dlq] if dlq else [])]
        require_topics(wait_for_broker(self.bootstrap), self.bootstrap, needed)
        self.topic_ids = _topic_ids(self.bootstrap, self.physical)
        config = consumer_config(self.settings, self.bootstrap)
        self.consumer = new_client(Consumer, config, logger=ClientLog())
        self.dlq = (
            new_client(Producer, dead_letter_producer_config(self.bootstrap), logger=ClientLog())
            if self.settings.dlq_topic
            else None
        )
        self.buffer: list[Any] = []
        self.buffered_bytes = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bronze-writer")
        # Validation in a process of its own: beside this process's consuming and writing, it
        # would otherwise take turns with them for the GIL.
        self._validators = Validators(self.settings.validation_workers)
        self._inflight: deque[tuple[Future[WriteResult], dict[tuple[str, int], int], int]] = deque()
        self.expected: dict[tuple[str, int], int | None] = {}
        self.eof: dict[tuple[str, int], int] = {}
        self.error: Exception | None = None
        self.summary = ConsumeSummary()
        self.committed: dict[tuple[str, int], int] = {}
        """Next offset in Bronze of each partition this member owns (the lag's baseline), as
        the writer thread commits them."""
        self.observer = LoadObserver(
            warehouse,
            "ingest_kafka",
            [kafka_dataset(self.bootstrap, topic) for topic in self.physical],
            [EVENT_TABLES[topic] for topic in self.settings.topics if topic in EVENT_TABLES],
            textfile=False,
        )

    # -- rebalance callbacks -------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        try:
            stored = {(p.source, p.partition): p for p in self._kafka_positions()}
            for tp in partitions:
                position = stored.get((f"kafka:{tp.topic}", tp.partition))
                if position is not None:
                    self._check_still_valid(tp, position)
                    tp.offset = position.next_offset
                else:
                    tp.offset = OFFSET_BEGINNING
                self.expected[(tp.topic, tp.partition)] = position.next_offset if position else None
                self.committed[(tp.topic, tp.partition)] = position.next_offset if position else 0
            consumer.assign(partitions)
        except Exception as exc:  # surfaced by run(); raising here would be lost in librdkafka
            self.error = exc
            consumer.assign([])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            self.flush()
        except Exception as exc:
            self.error = exc
        for tp in partitions:
            self.expected.pop((tp.topic, tp.partition), None)
            self.eof.pop((tp.topic, tp.partition), None)
            self._forget(tp.topic, tp.partition)

    def _forget(self, topic: str, partition: int) -> None:
        self.committed.pop((topic, partition), None)
        metrics.forget_kafka_partition(topic, partition)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.buffer = [m for m in self.buffer if (m.topic(), m.partition()) not in lost]
        for key in lost:
            self.expected.pop(key, None)
            self.eof.pop(key, None)
            self._forget(*key)

    def _kafka_positions(self) -> list[Position]:
        return [p for p in self.warehouse.all_positions() if p.source.startswith("kafka:")]

    def _check_still_valid(self, tp: Any, position: Position) -> None:
        topic_id = self.topic_ids.get(tp.topic)
        where = f"topic {tp.topic} partition {tp.partition}"
        if position.fingerprint and topic_id and position.fingerprint != topic_id:
            raise TopicResetError(
                f"{where}: topic id changed since it was loaded ({position.fingerprint} →"
                f" {topic_id}); the topic was recreated. Refusing to skip or reread: delete its"
                " rows from bronze._positions to start it again from the beginning"
            )
        low, high = self._watermarks(tp, where)
        if position.next_offset > high:
            raise TopicResetError(
                f"{where}: warehouse position {position.next_offset} is beyond the broker's end"
                f" offset {high}; the topic was recreated or truncated. Refusing to skip"
            )
        if position.next_offset < low:
            raise TopicResetError(
                f"{where}: messages {position.next_offset}..{low - 1} were deleted by retention"
                " before they were loaded. Refusing to skip them silently"
            )

    def _watermarks(self, tp: Any, where: str) -> tuple[int, int]:
        """The partition's low and high offsets. Right after a broker restart the client may
        not know the partition yet ("Local: Unknown partition") or time out: such errors are
        retried for up to ``WATERMARK_SECONDS``, then reported in one line (never a traceback
        out of the assignment)."""
        from confluent_kafka import KafkaError, KafkaException

        deadline = time.monotonic() + WATERMARK_SECONDS
        delay = 0.2
        while True:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                return int(low), int(high)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                code = error.code() if isinstance(error, KafkaError) else None
                transient = code in {
                    getattr(KafkaError, n) for n in _TRANSIENT_WATERMARK_ERRORS
                } or (isinstance(error, KafkaError) and error.retriable())
                if not transient or time.monotonic() + delay >= deadline:
                    reason = error.str() if isinstance(error, KafkaError) else str(exc)
                    raise PipelineError(
                        f"Kafka {where}: cannot read its offsets on {self.bootstrap}: {reason}"
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- batching ------------------------------------------------------------------------

    def flush(self, *, wait: bool = True) -> None:
        """Hand the buffered messages on; with ``wait``, until every batch is settled.

        A worker process validates the batch while the writer thread writes the one before it
        (events, dead letters and positions in one transaction) and this thread goes on
        consuming. Batches are written in order; each states the positions it expects, chained
        from the batch before it, so a batch whose predecessor was rejected is rejected too and
        nothing is written twice.
        """
        if self.buffer:
            messages, self.buffer, self.buffered_bytes = self.buffer, [], 0
            n = len(messages)
            # One C-level pass per attribute, then Arrow: no Python statement per message on
            # the consuming thread (it was a third of its time at 100k messages/s).
            physical = [m.topic() for m in messages]
            topics = list(map(self.logical.__getitem__, physical))
            partitions = [m.partition() for m in messages]
            offsets = [m.offset() for m in messages]
            values = [m.value() or b"" for m in messages]
            keys = [m.key() for m in messages]
            stamps = pa.array([m.timestamp()[1] for m in messages], pa.int64())
            metadata = pa.table(
                {
                    "_partition": pa.array(partitions, pa.int32()),
                    "_offset": pa.array(offsets, pa.int64()),
                    "_key": _key_texts(keys),
                    "_kafka_ts": pc.if_else(pc.greater(stamps, 0), stamps, None)
                    .cast(pa.timestamp("ms", tz="UTC"))
                    .cast(pa.timestamp("us", tz="UTC")),
                    "_source_file": pa.nulls(n, pa.string()),
                    "_source_line": pa.nulls(n, pa.int64()),
                }
            )
            validated = self._validators.submit(stage_events, values, metadata, topics)
            next_offsets = _next_offsets(physical, partitions, offsets)
            expected = {(f"kafka:{t}", p): self.expected.get((t, p)) for (t, p) in next_offsets}
            self.expected.update(next_offsets)
            originals = (topics, partitions, offsets, values, keys)
            job = self._writer.submit(self._write, validated, originals, next_offsets, expected)
            self._inflight.append((job, next_offsets, n))
        while self._inflight and (
            wait or len(self._inflight) > MAX_INFLIGHT or self._inflight[0][0].done()
        ):
            self._settle()

    def _write(
        self,
        validated: Future[tuple[dict[str, pa.Table], pa.Table]],
        originals: tuple[list[str], list[int], list[int], list[bytes], list[bytes | None]],
        next_offsets: dict[tuple[str, int], int],
        expected: dict[tuple[str, int], int | None],
    ) -> WriteResult:
        """Writer thread: write one validated batch, then send its dead letters to the DLQ.

        The consumer itself is only touched from the main thread (librdkafka's consumer handle
        is not to be shared), so committing offsets to Kafka happens in :meth:`_settle`.
        """
        events, dead = validated.result()
        positions = [
            Position(f"kafka:{t}", p, offset, None, self.topic_ids.get(t))
            for (t, p), offset in sorted(next_offsets.items())
        ]
        started = time.monotonic()
        result = self.warehouse.write_events(
            EventBatch(
                self.load_id,
                "kafka",
                events,
                dead,
                positions,
                expected,
                len(originals[3]),
                "kafka:" + ",".join(self.physical),
            )
        )
        self.observer.committed(
            event_rows(events), dead, read=len(originals[3]), seconds=time.monotonic() - started
        )
        for key, offset in next_offsets.items():  # read by the main thread for the lag
            if key in self.committed:
                self.committed[key] = max(self.committed[key], offset)
        if self.dlq is not None and dead.num_rows:
            topics, partitions, offsets, values, keys = originals
            where = zip(topics, partitions, offsets, strict=True)
            messages = zip(values, keys, strict=True)
            self._publish_dead_letters(dead, dict(zip(where, messages, strict=True)))
        return result

    def _settle(self) -> None:
        """Wait for the oldest batch in flight and account for it."""
        job, next_offsets, n = self._inflight.popleft()
        try:
            result = job.result()
        except PositionConflict as exc:
            log.warning("batch rejected, seeking back: %s", exc)
            self.summary.conflicts += 1
            # Later batches were chained on this one: let them fail too, then start over
            # from what the warehouse holds for every partition they touched.
            touched = set(next_offsets)
            while self._inflight:
                later, offsets, _ = self._inflight.popleft()
                touched |= set(offsets)
                with contextlib.suppress(PositionConflict):
                    later.result()
            self.buffer = [m for m in self.buffer if (m.topic(), m.partition()) not in touched]
            self._seek_to_stored(sorted(touched))
            return
        self.summary.read += n
        self.summary.loaded += result.loaded
        self.summary.dead_lettered += result.dead_lettered
        self.summary.batches += 1
        self._commit_to_kafka(next_offsets)

    def _seek_to_stored(self, keys: list[tuple[str, int]]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = {(p.source, p.partition): p.next_offset for p in self._kafka_positions()}
        for topic, partition in keys:
            offset = stored.get((f"kafka:{topic}", partition))
            self.expected[(topic, partition)] = offset
            with contextlib.suppress(Exception):  # the partition may have been revoked
                self.consumer.seek(
                    TopicPartition(topic, partition, OFFSET_BEGINNING if offset is None else offset)
                )

    def _commit_to_kafka(self, next_offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        with contextlib.suppress(KafkaException):  # informational only (lag monitoring)
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def _publish_dead_letters(
        self, dead: pa.Table, originals: dict[tuple[str, int, int], tuple[bytes, bytes | None]]
    ) -> None:
        """Send each dead letter's original value and key to the DLQ topic, with its origin."""
        assert self.dlq is not None and self.settings.dlq_topic
        for row in dead.to_pylist():
            headers = [
                ("source_topic", (self.settings.topic_prefix + (row["_topic"] or "")).encode()),
                ("source_partition", str(row["_partition"]).encode()),
                ("source_offset", str(row["_offset"]).encode()),
                ("reason", row["reason"].encode()),
            ]
            value, key = originals[(row["_topic"], row["_partition"], row["_offset"])]
            while True:
                try:
                    self.dlq.produce(
                        self.settings.topic_prefix + self.settings.dlq_topic,
                        value=value,
                        key=key,
                        headers=headers,
                        on_delivery=self._dead_letter_report,
                    )
                    break
                except BufferError:
                    self.dlq.poll(0.05)
        self.dlq.poll(0)

    def _dead_letter_report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.summary.dlq_failures += 1
            self.summary.dlq_failure = self.summary.dlq_failure or err.str()
            log.warning("dead letter not republished to the dead-letter topic: %s", err.str())

    # -- main loop -----------------------------------------------------------------------

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        metadata = self.consumer.list_topics(timeout=30)
        ends: dict[tuple[str, int], int] = {}
        for topic in self.physical:
            if topic not in metadata.topics:
                raise PipelineError(f"Kafka topic {topic} does not exist on {self.bootstrap}")
            for partition in metadata.topics[topic].partitions:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=30, cached=False
                )
                ends[(topic, partition)] = high
        return ends

    def _record_lag(self, *, cached: bool = True) -> None:
        """Set each owned partition's lag: its end offset minus its next offset in Bronze.

        While consuming, the end offset is the high watermark of the partition's last fetch
        response (``cached``): no request to the broker. Asking the broker (``cached=False``)
        queues behind the consumer's own fetches, which wait up to ``fetch.wait.max.ms`` each,
        so on the consuming thread it stalled the loop for most of a run with a slow sink. The
        final update after the last batch asks the broker. A partition not fetched yet, or a
        broker that does not answer in time, leaves the previous value."""
        from confluent_kafka import KafkaException, TopicPartition

        for (topic, partition), done in list(self.committed.items()):
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=1, cached=cached
                )
            except KafkaException:
                continue
            if high >= 0:
                metrics.set_kafka_lag(topic, partition, high - done)

    def _caught_up(self, targets: dict[tuple[str, int], int]) -> bool:
        stored: dict[tuple[str, int], int] | None = None
        for key, target in targets.items():
            if target == 0:
                continue
            done = self.expected.get(key) or 0
            if key in self.eof and not any((m.topic(), m.partition()) == key for m in self.buffer):
                done = max(done, self.eof[key])
            if done >= target:
                continue
            if key not in self.expected:  # another group member owns it: ask the warehouse
                if stored is None:
                    stored = {
                        (p.source.removeprefix("kafka:"), p.partition): p.next_offset
                        for p in self._kafka_positions()
                    }
                if stored.get(key, 0) >= target:
                    continue
            return False
        return True

    def _take(self, batch: list[Any], progress: Callable[[int], None] | None) -> bool:
        """Buffer the messages of one ``consume`` (handing the buffer on each time it reaches
        ``batch_bytes``) and note its events; True when something was handed on."""
        from confluent_kafka import KafkaError

        good = [m for m in batch if m.error() is None]
        if len(good) < len(batch):
            for msg in batch:
                err = msg.error()
                if err is None:
                    continue
                if err.code() == KafkaError._PARTITION_EOF:
                    self.eof[(msg.topic(), msg.partition())] = msg.offset()
                elif err.fatal():
                    raise PipelineError(f"Kafka consumer failed: {err.str()}")
                else:  # broker restarts and the like: librdkafka reconnects by itself
                    self.summary.transient_errors += 1
                    log.info("transient Kafka error: %s", err.str())
        flushed = False
        while good:
            sizes = [len(m.value() or b"") for m in good]
            totals = list(accumulate(sizes, initial=self.buffered_bytes))
            cut = max(1, bisect_left(totals, self.settings.batch_bytes))
            if cut > len(good):
                self.buffer.extend(good)
                self.buffered_bytes = totals[-1]
                break
            self.buffer.extend(good[:cut])
            self.buffered_bytes = totals[cut]
            good = good[cut:]
            before = self.summary.read
            self.flush(wait=False)
            flushed = True
            if progress:
                progress(self.summary.read - before)
        return flushed

    def run(
        self,
        *,
        until_caught_up: bool = False,
        max_seconds: float | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ConsumeSummary:
        """Consume until caught up, out of time, or ``stop`` is set; always flushes first."""
        stop = stop or threading.Event()
        started = time.monotonic()
        targets = self._end_offsets() if until_caught_up else None
        self.consumer.subscribe(
            list(self.physical),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        batch_started: float | None = None
        linger = self.settings.linger_ms / 1000
        last_check = last_lag = 0.0
        self.observer.__enter__()
        try:
            while True:
                if self.error is not None:
                    raise self.error
                if stop.is_set():
                    self.summary.stopped_by = "stopped"
                    break
                now = time.monotonic()
                if max_seconds is not None and now - started >= max_seconds:
                    self.summary.stopped_by = f"--max-seconds {max_seconds:g}"
                    break
                room = max(1, self.settings.batch_size - len(self.buffer))
                batch: list[Any] = self.consumer.consume(
                    num_messages=min(room, 10_000), timeout=0.1
                )
                if batch and self._take(batch, progress):
                    batch_started = None
                now = time.monotonic()
                if self.buffer and batch_started is None:
                    batch_started = now
                if self.buffer and (
                    len(self.buffer) >= self.settings.batch_size
                    or now - (batch_started or now) >= linger
                ):
                    before = self.summary.read
                    self.flush(wait=False)
                    batch_started = None
                    if progress:
                        progress(self.summary.read - before)
                if now - last_lag >= LAG_INTERVAL_SECONDS:
                    last_lag = now
                    self._record_lag()
                if targets is not None and now - last_check >= 0.2:
                    last_check = now
                    if self._inflight and self._inflight[0][0].done():
                        self.flush(wait=False)
                    if not self.buffer and not self._inflight and self._caught_up(targets):
                        self.summary.stopped_by = "caught up"
                        break
            if self.error is not None:
                raise self.error
            self.flush()
            self._record_lag(cached=False)
        except BaseException as exc:
            self.summary.seconds = time.monotonic() - started
            self.close()
            self.observer.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.summary.seconds = time.monotonic() - started
        self.close()
        self.observer.__exit__(None, None, None)
        return self.summary

    def close(self) -> None:
        """Leave the group and deliver outstanding dead letters."""
        self._writer.shutdown(wait=True)
        self._validators.close()
        with contextlib.suppress(Exception):
            self.consumer.close()
        if self.dlq is not None:
            left = self.dlq.flush(30)
            if left:
                self.summary.dlq_failures += left
                self.summary.dlq_failure = self.summary.dlq_failure or "timed out after 30 s"


def _key_texts(keys: list[bytes | None]) -> pa.Array:
    """The messages' keys as ``_key`` text (:func:`escaped_text`): in one Arrow pass when every
    key is UTF-8 without a backslash (then the text is the bytes), else key by key."""
    binary = pa.array(keys, pa.binary())
    if not pc.any(pc.match_substring(binary, "\\")).as_py():
        try:
            return binary.cast(pa.string())
        except pa.ArrowInvalid:
            pass
    return pa.array([None if k is None else escaped_text(k) for k in keys], pa.string())


def _next_offsets(
    topics: list[str], partitions: list[int], offsets: list[int]
) -> dict[tuple[str, int], int]:
    """The offset after the last message of each (topic, partition) of a batch."""
    table = pa.table({"t": topics, "p": partitions, "o": offsets})
    last = table.group_by(["t", "p"], use_threads=False).aggregate([("o", "max")])
    return {
        (t, p): o + 1
        for t, p, o in zip(
            last["t"].to_pylist(), last["p"].to_pylist(), last["o_max"].to_pylist(), strict=True
        )
    }
