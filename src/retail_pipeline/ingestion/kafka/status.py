"""Lag per topic and partition: the warehouse's offsets against the broker's end offsets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.ingestion.kafka.client import (
    ClientLog,
    kafka_reason,
    new_client,
    wait_for_broker,
)
from retail_pipeline.ingestion.kafka.producer import bootstrap_servers
from retail_pipeline.kafka_config import client_config
from retail_pipeline.warehouse.base import Position


@dataclass(frozen=True)
class PartitionLag:
    """One partition: what Bronze holds against what the broker has."""

    topic: str
    partition: int
    warehouse_offset: int | None
    end_offset: int | None

    @property
    def lag(self) -> int | None:
        """Messages on the broker not yet in Bronze (None when the broker is unreachable)."""
        if self.end_offset is None:
            return None
        return max(0, self.end_offset - (self.warehouse_offset or 0))


def partition_lags(
    positions: list[Position], bootstrap: str | None = None, topics: tuple[str, ...] = TOPICS
) -> tuple[list[PartitionLag], str | None]:
    """Lag of every partition of ``topics``; the error line when the broker can't be asked.

    Waits at most the connect timeout (``$RETAIL_KAFKA_CONNECT_TIMEOUT``, 10 s) for the broker.
    """
    stored = {
        (p.source.removeprefix("kafka:"), p.partition): p.next_offset
        for p in positions
        if p.source.startswith("kafka:")
    }
    ends: dict[tuple[str, int], int] = {}
    error = None
    servers = bootstrap_servers(bootstrap)
    try:
        ends = _end_offsets(servers, topics)
    except PipelineError as exc:
        error = str(exc)
    except Exception as exc:  # status must still show the warehouse side
        error = f"Kafka broker at {servers} could not be asked for end offsets: {kafka_reason(exc)}"
    keys = sorted(set(stored) | set(ends))
    return [PartitionLag(t, p, stored.get((t, p)), ends.get((t, p))) for t, p in keys], error


def status_consumer_config(bootstrap: str) -> dict[str, Any]:
    """The consumer that only asks for end offsets (``status``, ``health``); it joins no group
    but librdkafka wants a group id."""
    return client_config(
        {"bootstrap.servers": bootstrap, "group.id": "retail-status", "logger": ClientLog()}
    )


def _end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    metadata = wait_for_broker(bootstrap)
    consumer = new_client(Consumer, status_consumer_config(bootstrap))
    try:
        ends = {}
        for topic in topics:
            if topic not in metadata.topics:
                continue
            for partition in metadata.topics[topic].partitions:
                ends[(topic, partition)] = _high_watermark(
                    consumer, TopicPartition(topic, partition)
                )
        return ends
    finally:
        consumer.close()


def _high_watermark(consumer: Any, partition: Any, patience: float = 10.0) -> int:
    """The partition's end offset. A partition whose leader is moving or still being elected (a
    topic created a moment ago, a broker restarting) answers "not leader" for a while: ask
    again for up to ``patience`` seconds before giving up."""
    from confluent_kafka import KafkaError, KafkaException

    moving = {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    deadline = time.monotonic() + patience
    while True:
        try:
            _, high = consumer.get_watermark_offsets(partition, timeout=10, cached=False)
            return int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in moving or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
