"""Publish NDJSON event files to Kafka: topic by ``event_type``, key ``order_id``.

The producer is idempotent (``enable.idempotence``, ``acks=all``), so a retry after a broker
hiccup never writes a message twice, and every delivery report is checked: the run fails if any
message was not acknowledged. Lines that are not valid events are still sent as raw bytes,
because an upstream producer can be buggy and the consumer must cope, unless ``skip_invalid``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import EVENT_TYPE_TOPIC, TOPICS
from retail_pipeline.events.validator import check_event
from retail_pipeline.ingestion.files import check_file

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
log = logging.getLogger(__name__)


def bootstrap_servers(value: str | None = None) -> str:
    """``value``, else ``$RETAIL_KAFKA_BOOTSTRAP``, else the local broker."""
    return value or os.environ.get("RETAIL_KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP


@dataclass(frozen=True)
class Delivered:
    """Where one message landed."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass
class ProduceSummary:
    """What one produce run did."""

    sent: int = 0
    delivered: int = 0
    skipped_invalid: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        topics = ", ".join(f"{t} {n:,}" for t, n in sorted(self.per_topic.items()))
        rate = self.delivered / self.seconds if self.seconds else 0.0
        return (
            f"sent {self.sent:,} / delivered {self.delivered:,} / skipped {self.skipped_invalid:,}"
            f" invalid ({topics}) in {self.seconds:.1f} s, {rate:,.0f} msgs/s"
        )


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
    """Idempotent, throughput-oriented producer settings."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": 120_000,
    }


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
    """Send every non-empty line of ``paths``; returns once all are acknowledged.

    ``rate`` paces sending to that many messages per second (default: as fast as possible).
    ``topic_prefix`` is put before every topic name (e.g. ``prod.`` for ``prod.orders``).
    Lines that cannot be routed by ``event_type`` go to the topic named by the file's stem
    (``orders.ndjson`` → ``orders``), else to ``orders``.
    """
    from confluent_kafka import KafkaError, KafkaException, Message, Producer

    files = [check_file(Path(p)) for p in paths]
    producer = Producer(producer_config(bootstrap_servers(bootstrap)), logger=log)
    summary = ProduceSummary()
    errors: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err.str()}")
            return
        summary.delivered += 1
        if on_delivered is not None:
            on_delivered(
                Delivered(
                    str(msg.topic()),
                    int(msg.partition() or 0),
                    int(msg.offset() or 0),
                    bytes(msg.value() or b""),
                )
            )

    started = time.monotonic()
    for path in files:
        fallback = path.stem if path.stem in TOPICS else TOPICS[0]
        with path.open("rb") as handle:
            for raw_line in handle:
                line = raw_line.rstrip(b"\n")
                if not line:
                    continue
                topic, key, routable = route(line, fallback)
                if skip_invalid and not _valid(line, routable):
                    summary.skipped_invalid += 1
                    continue
                _send(producer, topic_prefix + topic, key, line, delivered)
                summary.sent += 1
                summary.per_topic[topic] = summary.per_topic.get(topic, 0) + 1
                if rate:
                    _pace(producer, started, summary.sent, rate)
                if summary.sent % 10_000 == 0:
                    producer.poll(0)
                    if progress:
                        progress(10_000)
    try:
        remaining = producer.flush(120)
    except KafkaException as exc:
        raise PipelineError(f"Kafka producer failed: {exc}") from None
    summary.seconds = time.monotonic() - started
    if errors or remaining:
        first = errors[0] if errors else "timed out waiting for acknowledgements"
        raise PipelineError(
            f"{len(errors) + remaining} of {summary.sent} messages not delivered: {first}"
        )
    return summary


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
