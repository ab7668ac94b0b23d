"""Publish NDJSON event files to Kafka: topic by ``event_type``, key ``order_id``.

The producer is idempotent (``enable.idempotence``, ``acks=all``), so a retry after a broker
hiccup never writes a message twice, and every delivery report is checked. Lines that are not
valid events are still sent as raw bytes, because an upstream producer can be buggy and the
consumer must cope, unless ``skip_invalid``.

A message Kafka refuses for itself (larger than the producer's or the topic's size limit, a
record the broker rejects) does not stop the run: the broker rejects a whole batch for one bad
message, so each message of a rejected batch is sent again on its own, and one refused even
alone goes to the dead-letter topic instead, with headers saying where it came from and why
(its value cut to :data:`DLQ_PREVIEW_BYTES` when it was too large). The run fails, after
sending the rest, only when a message reached neither its topic nor the dead-letter topic
(the broker went away, say).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import EVENT_TYPE_TOPIC, TOPICS
from retail_pipeline.events.validator import check_event
from retail_pipeline.ingestion.files import (
    LongLine,
    _open_events,
    check_file,
    max_record_bytes,
    read_lines,
    too_long_reason,
)
from retail_pipeline.ingestion.kafka.client import (
    DLQ_TOPIC,
    PIPELINE_TOPICS,
    ClientLog,
    kafka_reason,
    new_client,
    require_topics,
    wait_for_broker,
)
from retail_pipeline.kafka_config import client_config
from retail_pipeline.settings import settings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
MESSAGE_MAX_BYTES = 1_000_000
"""The producer's own limit on one message (librdkafka's ``message.max.bytes``)."""
DLQ_PREVIEW_BYTES = 64 * 1024
"""A message refused as too large goes to the dead-letter topic cut to this many bytes."""
log = logging.getLogger(__name__)


def bootstrap_servers(value: str | None = None) -> str:
    """``value``, else the settings' (``RETAIL_KAFKA_BOOTSTRAP``, default the local broker)."""
    return value or settings().kafka_bootstrap


@dataclass(frozen=True)
class Delivered:
    """Where one message landed."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True)
class DeadLetter:
    """A line Kafka would not take, published to the dead-letter topic instead."""

    source_file: str
    source_line: int
    topic: str
    """The topic it was meant for (with the prefix)."""
    size: int
    reason: str

    def describe(self) -> str:
        """``orders.ndjson line 2 (2,098,312 bytes for orders): <reason>``."""
        where = (
            f"{Path(self.source_file).name} line {self.source_line}"
            if self.source_file
            else "a line no longer in the input files"
        )
        return f"{where} ({self.size:,} bytes for {self.topic}): {self.reason}"


@dataclass
class ProduceSummary:
    """What one produce run did."""

    sent: int = 0
    delivered: int = 0
    skipped_invalid: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    dead_letter_topic: str = DLQ_TOPIC

    @property
    def dead_lettered(self) -> int:
        """Lines published to the dead-letter topic instead of their own."""
        return len(self.dead_letters)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        topics = ", ".join(f"{t} {n:,}" for t, n in sorted(self.per_topic.items()))
        rate = self.delivered / self.seconds if self.seconds else 0.0
        text = (
            f"sent {self.sent:,} / delivered {self.delivered:,} / dead-lettered"
            f" {self.dead_lettered:,} / skipped {self.skipped_invalid:,} invalid ({topics})"
            f" in {self.seconds:.1f} s, {rate:,.0f} msgs/s"
        )
        if self.dead_letters:
            first = "" if self.dead_lettered == 1 else ", the first"
            text += f"; to topic {self.dead_letter_topic}{first}: {self.dead_letters[0].describe()}"
        return text


def route(line: bytes, fallback_topic: str) -> tuple[str, bytes | None, bool]:
    """(topic, key, routable) for one raw line; unparseable lines go to ``fallback_topic``."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return fallback_topic, None, False
    if not isinstance(event, dict):
        return fallback_topic, None, False
    topic = EVENT_TYPE_TOPIC.get(event.get("event_type"))  # type: ignore[arg-type]
    order_id = event.get("order_id")
    key = order_id.encode() if isinstance(order_id, str) else None
    return (topic or fallback_topic), key, topic is not None


def producer_config(bootstrap: str) -> dict[str, Any]:
    """Idempotent, throughput-oriented producer settings: idempotence and the delivery timeout
    (the run waits for every report within it) required, the batching tunable."""
    required: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 120_000,
    }
    defaults: dict[str, Any] = {
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "message.max.bytes": MESSAGE_MAX_BYTES,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    return client_config(required, defaults)


def produce_files(
    paths: Iterable[str | Path],
    *,
    bootstrap: str | None = None,
    rate: float | None = None,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    on_delivered: Callable[[Delivered], None] | None = None,
    topic_prefix: str = "",
) -> ProduceSummary:
    """Send every non-empty line of ``paths``; returns once each is acknowledged.

    ``rate`` paces sending to that many messages per second (default: as fast as possible).
    ``topic_prefix`` is put before every topic name (e.g. ``prod.`` for ``prod.orders``).
    Lines that cannot be routed by ``event_type`` go to the topic named by the file's stem
    (``orders.ndjson`` → ``orders``), else to ``orders``. Lines Kafka refuses go to the
    dead-letter topic (see the module's doc) and are listed in the summary. Waits at most the
    connect timeout for the broker and fails in one line if it does not answer, or if one of
    the pipeline's topics is missing.
    """
    from confluent_kafka import KafkaException

    files = [check_file(Path(p)) for p in paths]
    bootstrap = bootstrap_servers(bootstrap)
    metadata = wait_for_broker(bootstrap)
    require_topics(metadata, bootstrap, [topic_prefix + t for t in PIPELINE_TOPICS])
    publisher = _Publisher(bootstrap, topic_prefix, files, on_delivered)
    summary = publisher.summary
    # One callback object for every message: a per-message one costs a fifth of the throughput.
    produce, report = publisher.producer.produce, publisher.batch_report
    started = time.monotonic()
    for index, path in enumerate(files):
        fallback = path.stem if path.stem in TOPICS else TOPICS[0]
        for number, line in _numbered_lines(path):
            if isinstance(line, LongLine):
                topic = route(line.prefix, fallback)[0]
                publisher.too_long((index, number), topic_prefix + topic, line)
                summary.sent += 1
                summary.per_topic[topic] = summary.per_topic.get(topic, 0) + 1
                continue
            if not line:
                continue
            topic, key, routable = route(line, fallback)
            if skip_invalid and not _valid(line, routable):
                summary.skipped_invalid += 1
                continue
            try:
                try:
                    produce(topic_prefix + topic, value=line, key=key, on_delivery=report)
                except BufferError:
                    _send(publisher.producer, topic_prefix + topic, key, line, report)
            except KafkaException as exc:
                publisher.refused_locally((index, number), topic_prefix + topic, key, line, exc)
            summary.sent += 1
            summary.per_topic[topic] = summary.per_topic.get(topic, 0) + 1
            if rate:
                _pace(publisher.producer, started, summary.sent, rate)
            if summary.sent % 10_000 == 0:
                publisher.poll()
                if progress:
                    progress(10_000)
    publisher.finish()
    summary.seconds = time.monotonic() - started
    missing = summary.sent - summary.delivered - summary.dead_lettered
    if missing:
        first = publisher.undelivered[0] if publisher.undelivered else "no delivery report"
        raise PipelineError(f"{missing:,} of {summary.sent:,} messages not delivered: {first}")
    return summary


_Where = tuple[int, int]
"""(index of the file, 1-based line number)."""
READ_BYTES = 8 << 20
"""Bytes read from an event file at a time."""


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes | LongLine]]:
    """``(line number, line without its newline)`` of an NDJSON (or gzip NDJSON) file, a line
    over ``RETAIL_MAX_RECORD_BYTES`` given as a :class:`LongLine` (never held whole): memory is
    bounded by the read size and that cap, whatever the file holds."""
    number = 0
    with _open_events(path) as handle:
        for item in read_lines(handle, 0, READ_BYTES, max_record_bytes(), final=True):
            if isinstance(item, LongLine):
                number += 1
                yield number, item
                continue
            block = item[1]
            lines = block.split(b"\n")
            if block.endswith(b"\n"):
                lines.pop()
            for line in lines:
                number += 1
                yield number, line


@dataclass
class _Refused:
    """A message to dead-letter; ``where`` is found in the files when the broker refused it."""

    where: _Where | None
    topic: str
    key: bytes | None
    value: bytes
    reason: str
    too_large: bool
    size: int | None = None
    """The whole message's size when ``value`` holds only its first bytes (a line too long to
    read whole)."""


class _Publisher:
    """The producer of one run, its delivery reports and what it does with refused messages."""

    FLUSH_SECONDS = 150.0
    """Longer than ``message.timeout.ms``: every message has its report by then."""

    def __init__(
        self,
        bootstrap: str,
        topic_prefix: str,
        files: list[Path],
        on_delivered: Callable[[Delivered], None] | None,
    ) -> None:
        from confluent_kafka import Producer

        self.config = producer_config(bootstrap)
        self.log = ClientLog()
        self.producer = new_client(Producer, self.config, logger=self.log)
        self.alone: Any = None  # a producer of one-message batches, made on first need
        self.files = files
        self.topic_prefix = topic_prefix
        self.dlq_topic = topic_prefix + DLQ_TOPIC
        self.on_delivered = on_delivered
        self.summary = ProduceSummary(dead_letter_topic=self.dlq_topic)
        self.batch_report = functools.partial(self._report, "batch")
        self.alone_report = functools.partial(self._report, "alone")
        self.failed: deque[tuple[str, Any, Any]] = deque()
        """(stage, error, message) of failed delivery reports, not handled yet."""
        self.refused: list[_Refused] = []
        """Messages to send to the dead-letter topic once every report is in."""
        self.undelivered: list[str] = []

    def poll(self) -> None:
        """Serve delivery reports and handle the failed ones."""
        self.producer.poll(0)
        self._handle_failures()

    def finish(self) -> None:
        """Wait for every report, messages sent again alone and dead letters included."""
        from confluent_kafka import KafkaException

        while True:
            producers = [p for p in (self.producer, self.alone) if p is not None]
            try:
                remaining = sum(p.flush(self.FLUSH_SECONDS) for p in producers)
            except KafkaException as exc:
                raise PipelineError(f"Kafka producer failed: {kafka_reason(exc)}") from None
            self._handle_failures()
            if remaining:
                self.undelivered.append(
                    f"{remaining:,} still unacknowledged after {self.FLUSH_SECONDS:.0f} s"
                )
                return
            if self.failed or any(len(p) for p in (self.producer, self.alone) if p is not None):
                continue
            if not self.refused:
                return
            self._publish_dead_letters()

    # -- delivery reports (called by librdkafka inside poll/flush) ------------------------

    def _report(self, stage: str, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append((stage, err, msg))
            return
        self.summary.delivered += 1
        if self.on_delivered is not None:
            self.on_delivered(
                Delivered(
                    str(msg.topic()),
                    int(msg.partition() or 0),
                    int(msg.offset() or 0),
                    bytes(msg.value() or b""),
                )
            )

    def _dead_letter_report(self, letter: DeadLetter, err: Any, _msg: Any) -> None:
        if err is None:
            self.summary.dead_letters.append(letter)
        else:
            self.undelivered.append(
                f"{letter.describe()}; the dead-letter topic {self.dlq_topic} refused it too:"
                f" {err.str()}"
            )

    # -- failures -------------------------------------------------------------------------

    def _handle_failures(self) -> None:
        from confluent_kafka import KafkaError

        while self.failed:
            stage, err, msg = self.failed.popleft()
            code = err.code()
            if err.fatal() or code == KafkaError._FATAL:
                self._fatal(err.str())
            topic, key, value = str(msg.topic()), msg.key(), bytes(msg.value() or b"")
            if code in _OUTAGE or err.retriable():
                self.undelivered.append(f"a message for {topic}: {err.str()}")
            elif stage == "batch" and code in _BATCH_REJECTED:
                self._send_alone(topic, key, value)
            else:
                by = "the broker" + (" even in a batch of its own" if stage == "alone" else "")
                reason = f"refused by {by}: {err.str()}" if code >= 0 else err.str()
                self.refused.append(_Refused(None, topic, key, value, reason, code in _TOO_LARGE))

    def refused_locally(
        self, where: _Where, topic: str, key: bytes | None, value: bytes, exc: Exception
    ) -> None:
        """``produce`` raised for this message: dead-letter it (or stop, if fatal)."""
        from confluent_kafka import KafkaError

        err = exc.args[0] if exc.args else None
        code = err.code() if isinstance(err, KafkaError) else None
        if isinstance(err, KafkaError) and (err.fatal() or code == KafkaError._FATAL):
            self._fatal(err.str())
        if code == KafkaError.MSG_SIZE_TOO_LARGE:
            reason = (
                f"larger than the producer's limit of {int(self.config['message.max.bytes']):,}"
                " bytes (message.max.bytes)"
            )
        else:
            reason = f"refused by the producer: {kafka_reason(exc)}"
        self.refused.append(_Refused(where, topic, key, value, reason, code in _TOO_LARGE))

    def too_long(self, where: _Where, topic: str, line: LongLine) -> None:
        """A line over ``RETAIL_MAX_RECORD_BYTES``, never read whole: dead-letter its first
        bytes (no key: the line was not parsed), with its size."""
        reason = too_long_reason(line.size, max_record_bytes(), kept=len(line.prefix))
        self.refused.append(_Refused(where, topic, None, line.prefix, reason, True, line.size))

    def _send_alone(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send again in a batch of its own: the broker refuses whole batches."""
        from confluent_kafka import KafkaException, Producer

        if self.alone is None:
            alone = {**self.config, "batch.num.messages": 1}
            self.alone = new_client(Producer, alone, logger=self.log)
        try:
            _send(self.alone, topic, key, value, self.alone_report)
        except KafkaException as exc:
            self.refused.append(
                _Refused(
                    None, topic, key, value, f"refused by the producer: {kafka_reason(exc)}", False
                )
            )

    def _publish_dead_letters(self) -> None:
        from confluent_kafka import KafkaException

        refused, self.refused = self.refused, []
        self._locate(refused)
        for item in refused:
            path, number = (
                (str(self.files[item.where[0]]), item.where[1]) if item.where else ("", 0)
            )
            size = len(item.value) if item.size is None else item.size
            letter = DeadLetter(path, number, item.topic, size, item.reason)
            body = item.value[:DLQ_PREVIEW_BYTES] if item.too_large else item.value
            headers: list[tuple[str, str | bytes | None]] = [
                ("source_topic", item.topic.encode()),
                ("source_file", path.encode()),
                ("source_line", str(number).encode()),
                ("reason", item.reason.encode()),
                ("original_size", str(size).encode()),
                ("truncated", b"true" if len(body) < size else b"false"),
            ]
            report = functools.partial(self._dead_letter_report, letter)
            try:
                while True:
                    try:
                        self.producer.produce(
                            self.dlq_topic,
                            value=body,
                            key=item.key,
                            headers=headers,
                            on_delivery=report,
                        )
                        break
                    except BufferError:
                        self.producer.poll(0.05)
            except KafkaException as exc:
                self.undelivered.append(
                    f"{letter.describe()}; the dead-letter topic {self.dlq_topic} refused it too:"
                    f" {kafka_reason(exc)}"
                )

    def _locate(self, refused: list[_Refused]) -> None:
        """Find the file and line of each message the broker refused (one pass over the files).

        Identical lines are claimed in order, so two refused copies of a line get both lines.
        """
        wanted: dict[bytes, list[_Refused]] = {}
        for item in refused:
            if item.where is None:
                wanted.setdefault(item.value, []).append(item)
        for index, path in enumerate(self.files):
            if not wanted:
                return
            fallback = path.stem if path.stem in TOPICS else TOPICS[0]
            for number, line in _numbered_lines(path):
                if isinstance(line, LongLine):
                    continue
                waiting = wanted.get(line)
                if not waiting:
                    continue
                topic = self.topic_prefix + route(line, fallback)[0]
                match = next((w for w in waiting if w.topic == topic), None)
                if match is not None:
                    match.where = (index, number)
                    waiting.remove(match)
                    if not waiting:
                        del wanted[line]

    def _fatal(self, reason: str) -> None:
        raise PipelineError(
            f"Kafka producer failed for good after {self.summary.delivered:,} deliveries: {reason}"
        )


def _error_codes() -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    from confluent_kafka import KafkaError as E

    outage = frozenset(
        {
            E._MSG_TIMED_OUT,
            E._TIMED_OUT,
            E._TRANSPORT,
            E._ALL_BROKERS_DOWN,
            E._DESTROY,
            E._PURGE_QUEUE,
            E._PURGE_INFLIGHT,
        }
    )
    too_large = frozenset({E.MSG_SIZE_TOO_LARGE, E.RECORD_LIST_TOO_LARGE, E.INVALID_MSG_SIZE})
    return outage, too_large, too_large | {E.INVALID_RECORD, E.INVALID_MSG}


try:
    _OUTAGE, _TOO_LARGE, _BATCH_REJECTED = _error_codes()
except ImportError:  # confluent-kafka is an optional dependency
    _OUTAGE = _TOO_LARGE = _BATCH_REJECTED = frozenset()


def _valid(line: bytes, routable: bool) -> bool:
    return routable and check_event(line) is None


def _send(
    producer: Any, topic: str, key: bytes | None, value: bytes, callback: Callable[..., None]
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=callback)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: serve delivery reports, then retry


def _pace(producer: Any, started: float, sent: int, rate: float) -> None:
    ahead = started + sent / rate - time.monotonic()
    if ahead > 0.002:
        producer.poll(ahead)  # waits for delivery reports at most this long
        ahead = started + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
