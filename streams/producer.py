"""Write records to the topics as the platform's services would: paced, keyed, sometimes wrong.

Used by ``coursepulse simulate`` (to Kafka), the demo and tests. ``bad_fraction`` injects the
faults real producers make (malformed JSON, wrong types, out-of-range values, empty keys,
oversized records, timestamps in the future) and at-least-once repeats, so the DLQ and the
de-duplication are exercised; :class:`ProduceStats` counts each kind so tests can check that
every bad record reached the DLQ and every good one was processed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from schemas.base import format_ts, to_dict
from schemas.events import Course
from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings

__all__ = ["BAD_KINDS", "ProduceStats", "corrupt", "produce", "to_wire"]

log = logging.getLogger(__name__)

#: kinds of injected faults -> whether the pipeline must send them to the DLQ
BAD_KINDS = {
    "not_json": True,
    "missing_field": True,
    "wrong_type": True,
    "out_of_range": True,
    "empty_key": True,
    "too_large": True,
    "future_ts": True,
    "repeat": False,  # a redelivered good event: dropped by de-duplication, not an error
}


@dataclass
class ProduceStats:
    """What was sent, by topic and by injected fault."""

    sent: Counter[str] = field(default_factory=Counter)
    good: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    last_ts: int = 0
    #: event_id -> wall-clock send time of the most recent events (for event->output latency)
    sent_at: dict[str, float] = field(default_factory=dict)
    keep_sent_at: int = 0

    @property
    def total(self) -> int:
        """Records sent, of every kind."""
        return sum(self.sent.values())

    @property
    def expected_dlq(self) -> int:
        """Records sent that the worker must dead-letter (the bad kinds that are rejected)."""
        return sum(n for kind, n in self.bad.items() if BAD_KINDS[kind])

    def as_dict(self) -> dict[str, Any]:
        """The counts as plain JSON-ready dicts, with the elapsed time."""
        return {"sent": dict(self.sent), "good": dict(self.good), "bad": dict(self.bad),
                "expected_dlq": self.expected_dlq, "elapsed_s": round(time.monotonic() - self.started, 3)}


def to_wire(record: Any) -> tuple[str, bytes, bytes]:
    """``(topic, key, value)`` of a record as a producing service would send it (ISO-8601 ts)."""
    data = to_dict(record)
    for name in ("ts", "published_at"):
        if isinstance(data.get(name), int):
            data[name] = format_ts(data[name])
    key = record.course_id if isinstance(record, Course) else record.user_id
    return record.topic, key.encode(), orjson.dumps(data)


def corrupt(topic: str, key: bytes, value: bytes, kind: str, rng: random.Random) -> tuple[bytes, bytes]:
    """A faulty variant ``(key, value)`` of a good message."""
    data = orjson.loads(value)
    if kind == "not_json":
        return key, value[: max(1, len(value) // 2)] + b"\xff{"
    if kind == "missing_field":
        data.pop(rng.choice(["event_id", "ts", "user_id"]))
    elif kind == "wrong_type":
        field_ = {"views": "progress", "purchases": "amount", "shares": "course_id"}[topic]
        data[field_] = [1, 2] if field_ == "course_id" else "a lot"
    elif kind == "out_of_range":
        if topic == "views":
            data["progress"] = 1.5
        elif topic == "purchases":
            data["amount"] = -10.0
        else:
            data["channel"] = "carrier_pigeon"
    elif kind == "empty_key":
        return b"", value
    elif kind == "too_large":
        data["padding"] = "x" * 70_000
    elif kind == "future_ts":
        data["ts"] = int(time.time() * 1000) + 30 * 86_400_000
    else:  # pragma: no cover - guarded by produce()
        msg = f"unknown fault kind {kind!r}"
        raise ValueError(msg)
    return key, orjson.dumps(data)


async def _paced(records: Iterable[Any], rate: float, duration: float | None) -> AsyncIterator[Any]:
    start = time.monotonic()
    for n, record in enumerate(records):
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            return
        if rate > 0:
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
        elif n % 1000 == 0:
            await asyncio.sleep(0)
        yield record


async def produce(
    settings: Settings,
    records: Iterable[Any],
    *,
    rate: float = 0.0,
    duration: float | None = None,
    bad_fraction: float = 0.0,
    seed: int = 0,
    stats: ProduceStats | None = None,
    stop: asyncio.Event | None = None,
    linger_ms: int = 5,
) -> ProduceStats:
    """Send records to their topics at ``rate`` per second (0: as fast as possible).

    ``stats`` (filled as records go out) lets a caller watch progress; ``stop`` ends early.
    ``linger_ms`` is how long the producer gathers records into a batch: at a paced rate a short
    linger writes batches of one record, and Tansu's fetch cost grows with the batches a partition
    holds (docs/reliability.md), so a long run should batch as a production emitter would.
    """
    if not 0 <= bad_fraction < 1:
        msg = f"bad_fraction must be in [0, 1), got {bad_fraction}"
        raise ValueError(msg)
    rng = random.Random(seed)
    stats = stats if stats is not None else ProduceStats()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=linger_ms,
                                max_request_size=1_048_576, acks=1)
    await producer.start()
    kinds = list(BAD_KINDS)
    last_good: tuple[str, bytes, bytes] | None = None
    try:
        async for record in _paced(records, rate, duration):
            if stop is not None and stop.is_set():
                break
            topic, key, value = to_wire(record)
            await producer.send(settings.topic(topic), value=value, key=key)
            stats.sent[topic] += 1
            stats.good[topic] += 1
            stats.last_ts = max(stats.last_ts, getattr(record, "ts", 0) or 0)
            if stats.keep_sent_at and topic != "courses":
                stats.sent_at[record.event_id] = time.time()
                if len(stats.sent_at) > stats.keep_sent_at:
                    del stats.sent_at[next(iter(stats.sent_at))]
            if topic != "courses" and bad_fraction and rng.random() < bad_fraction:
                kind = rng.choice(kinds)
                if kind == "repeat":
                    if last_good is not None:
                        await producer.send(settings.topic(last_good[0]), value=last_good[2], key=last_good[1])
                        stats.sent[last_good[0]] += 1
                        stats.bad[kind] += 1
                else:
                    bad_key, bad_value = corrupt(topic, key, value, kind, rng)
                    await producer.send(settings.topic(topic), value=bad_value, key=bad_key)
                    stats.sent[topic] += 1
                    stats.bad[kind] += 1
            if topic != "courses":
                last_good = (topic, key, value)
        await producer.flush()
    finally:
        await producer.stop()
    return stats
