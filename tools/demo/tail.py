"""The demo's reading side: a tail of the output topics while it runs, and a count of every topic at the end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.topics import OUTPUT_TOPICS
from streams.kafka_auth import aiokafka_kwargs
from streams.producer import ProduceStats
from streams.settings import Settings

#: every output topic (schemas.topics)
_TAILED = OUTPUT_TOPICS


class Tail:
    """Counts and keeps samples of the output topics while the demo runs."""

    def __init__(self, settings: Settings, sent: ProduceStats | None = None) -> None:
        self.settings = settings
        self.sent = sent
        #: seconds from an event's send to the recommendation it triggered (Kafka timestamps)
        self.rec_latency: deque[float] = deque(maxlen=20_000)
        self.warmup_s = 5.0
        self.counts: Counter[str] = Counter()
        self.segments: dict[str, str] = {}
        self.samples: dict[str, deque[dict[str, Any]]] = {t: deque(maxlen=5) for t in _TAILED}
        self.first_seen: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Read the tailed topics from the beginning until ``stop`` is set."""
        consumer = AIOKafkaConsumer(
            *(self.settings.topic(t) for t in _TAILED),
            bootstrap_servers=self.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        prefix = len(self.settings.topic_prefix)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                for tp, records in batch.items():
                    topic = tp.topic[prefix:]
                    for rec in records:
                        self.counts[topic] += 1
                        self.first_seen.setdefault(topic, time.monotonic())
                        try:
                            value = orjson.loads(rec.value)
                        except orjson.JSONDecodeError:
                            continue
                        if topic == "user-profiles":
                            self.segments[value["user_id"]] = value["segment"]
                        elif topic == "recommendations" and self.sent is not None:
                            sent_at = self.sent.sent_at.get(value.get("event_id"))
                            # steady state: the first seconds (consumer group join, catch-up) excluded
                            warm = time.monotonic() - self.first_seen["recommendations"] > self.warmup_s
                            if sent_at is not None and warm:
                                self.rec_latency.append(rec.timestamp / 1000 - sent_at)
                        self.samples[topic].append(value)
        finally:
            await consumer.stop()


async def _start_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in await consumer.topics() for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def count_topics(settings: Settings, start: dict[TopicPartition, int], idle_s: float = 1.5,
                       timeout_s: float = 120.0) -> dict[str, int]:
    """Messages written to every topic since ``start``, by reading them: first at least to the end
    offsets the broker reports (Tansu's lie one batch short), then until nothing came for
    ``idle_s`` (a slow first fetch on a loaded machine does not end the count at zero)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1_048_576)
    await consumer.start()
    counts: Counter[str] = Counter()
    try:
        topics = sorted(await consumer.topics())
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp, 0))
        ends = dict(await consumer.end_offsets(tps)) if tps else {}
        behind = {tp for tp in tps if ends.get(tp, 0) > start.get(tp, 0)}
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while (behind or time.monotonic() - last < idle_s) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            n = sum(len(r) for r in batch.values())
            if n:
                last = time.monotonic()
                for tp, records in batch.items():
                    counts[tp.topic] += len(records)
                    if tp in behind and records[-1].offset + 1 >= ends[tp]:
                        behind.discard(tp)
        for t in topics:
            counts.setdefault(t, 0)
    finally:
        await consumer.stop()
    return dict(sorted(counts.items()))
