"""Rebuild the Redis serving copy of some partitions from the compacted output topics.

``user-profiles`` and ``recommendations`` hold, keyed by user_id, the very bytes the publishers
write to Redis, so the last record per key of a partition is what Redis should hold for that
partition's users. :func:`resync` reads the worker's partitions of both topics from the beginning
with a plain consumer (no group), keeps the last value per key (Tansu does not compact) and writes
the values to Redis in pipelines, each with what is left of its TTL counted from the record's
timestamp. Keys the publishers write (or that become owed) while it runs are left to them: their
values are newer than anything read here (:meth:`streams.serving.RedisServing.begin_resync`).

Where a topic ends: Tansu's ListOffsets "latest" may be one batch short, so the end offsets are
only a floor. Past them, reading goes on until a fetch comes back empty, or for ``grace_s`` at most
when the topic is busy (records appended after the start are the publishers' business anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.serving import RedisServing

__all__ = ["KINDS", "ResyncError", "read_latest", "resync"]

log = logging.getLogger(__name__)

#: serving kind -> the output topic (logical name) that holds its values
KINDS = {"profile": "user-profiles", "rec": "recommendations"}


class ResyncError(RuntimeError):
    """A re-sync could not finish (it is retried later)."""


async def read_latest(settings: Any, topic: str, partitions: Iterable[int], timeout_s: float = 300.0,  # noqa: ANN401
                      grace_s: float = 2.0) -> dict[bytes, tuple[bytes | None, int]]:
    """The last ``(value, timestamp_ms)`` per key in ``partitions`` of ``topic`` (a full name)."""
    tps = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=100, max_partition_fetch_bytes=4_194_304)
    await consumer.start()
    latest: dict[bytes, tuple[bytes | None, int]] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        floor = await consumer.end_offsets(tps)  # may be one batch short on Tansu: a floor only
        deadline = time.monotonic() + timeout_s
        past_floor_at: float | None = None
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    if rec.key is not None:
                        latest[rec.key] = (rec.value, rec.timestamp)
            now = time.monotonic()
            if past_floor_at is None:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= floor[tp] for tp in tps):
                    past_floor_at = now
            if past_floor_at is not None and (not any(batch.values()) or now - past_floor_at >= grace_s):
                return latest
            if now > deadline:
                msg = f"reading {topic} partitions {[tp.partition for tp in tps]} took over {timeout_s:.0f} s"
                raise ResyncError(msg)
    finally:
        await consumer.stop()


async def resync(serving: RedisServing, settings: Any, partitions: Iterable[int], *,  # noqa: ANN401
                 settle_s: float = 1.0, chunk: int = 1000, timeout_s: float = 300.0) -> dict[str, int]:
    """Rebuild Redis for ``partitions`` from both output topics; return keys written per kind.

    ``settle_s``: a pause after tracking starts, so that values the publishers already wrote to
    Redis but whose records were still in the producer's buffer are not overwritten by older ones.
    On success the serving copy's re-sync flag is cleared (unless it was raised again meanwhile).
    """
    partitions = sorted(set(partitions))
    token = serving.begin_resync()
    ok = False
    written: dict[str, int] = {}
    try:
        if settle_s:
            await asyncio.sleep(settle_s)
        for kind, name in KINDS.items():
            latest = await read_latest(settings, settings.topic(name), partitions, timeout_s)
            now_ms = time.time() * 1000
            rows: list[tuple[str, bytes | None, int]] = []
            n = 0
            for key, (value, ts_ms) in latest.items():
                ttl = serving.ttl_s if ts_ms <= 0 else int(serving.ttl_s - (now_ms - ts_ms) / 1000)
                if ttl < 1:  # expired by now: Redis would not hold it either
                    continue
                rows.append((key.decode(), value, ttl))
                if len(rows) >= chunk:
                    n += await serving.put_resynced(kind, rows)
                    rows = []
            if rows:
                n += await serving.put_resynced(kind, rows)
            written[kind] = n
        ok = True
        return written
    finally:
        serving.end_resync(token, ok)
