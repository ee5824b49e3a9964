"""Does the embedded broker slow down as its log grows? Produce ``chunks`` x 100,000 records of
``bytes`` each (default 200) to one topic (12 partitions) of a fresh embedded Tansu, in batches of
``per_batch`` records (default 0: as many as the producer packs, hundreds), and print, after each
chunk, the produce rate, one record's produce-to-fetch round trip at the tail and the time a
consumer 100 records behind on every partition takes to fetch them.

Run: ``python -m tools.bench.broker_growth [chunks] [bytes] [per_batch]`` (default 15 200 0, i.e.
1.5 million records). A producer that sends events as they happen writes batches of one or a few
records: ``per_batch`` 1 shows what that does to the broker.
A diagnostic for docs/reliability.md (the soak's slow-down), not part of ``coursepulse bench``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streams.settings import Settings

CHUNK = 100_000


async def _send(producer: Any, topic: str, value: bytes, per_batch: int) -> None:
    """One chunk: packed by the producer (``per_batch`` 0) or in batches of ``per_batch``."""
    if per_batch <= 0:
        futures = [await producer.send(topic, value, key=b"k%d" % i, partition=i % 12) for i in range(CHUNK)]
        await asyncio.gather(*futures)
        return
    futures = []
    for n in range(CHUNK // per_batch):
        batch = producer.create_batch()
        for i in range(per_batch):
            batch.append(key=b"k%d" % i, value=value, timestamp=None)
        futures.append(await producer.send_batch(batch, topic, partition=n % 12))
        if len(futures) >= 2_000:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)


async def _behind(consumer: Any, topic: str, lag: int) -> tuple[float, int]:
    """Seconds to fetch the last ``lag`` records of every partition, and how many came."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in range(12)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(0, ends[tp] - lag))
    t = time.perf_counter()
    got = 0
    while got < 12 * lag and time.perf_counter() - t < 60:
        batches = await consumer.getmany(*tps, timeout_ms=1000)
        got += sum(len(v) for v in batches.values())
    return time.perf_counter() - t, got


async def _grow(settings: Settings, chunks: int, size: int = 200, per_batch: int = 0) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams.admin import create_topics

    s = dataclasses.replace(settings, topic_prefix="grow-")
    await create_topics(s)
    topic = s.topic("views")
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, linger_ms=5, max_batch_size=262_144)
    await producer.start()
    try:
        value = b"x" * size
        for chunk in range(1, chunks + 1):
            t = time.perf_counter()
            await _send(producer, topic, value, per_batch)
            rate = CHUNK / (time.perf_counter() - t)
            consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers, group_id=None, enable_auto_commit=False,
                                        fetch_max_wait_ms=25)
            await consumer.start()
            try:
                tp = TopicPartition(topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_end(tp)
                t = time.perf_counter()
                await producer.send_and_wait(topic, value, key=b"z", partition=0)
                await consumer.getmany(tp, timeout_ms=5000)
                tail_ms = (time.perf_counter() - t) * 1000
                behind_s, got = await _behind(consumer, topic, 100)
            finally:
                await consumer.stop()
            print(f"records {chunk * CHUNK:>9,}  produce {rate:>8,.0f} rec/s  tail round trip {tail_ms:6.1f} ms"
                  f"  100 behind x 12 partitions: {got} in {behind_s * 1000:6.1f} ms", flush=True)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> None:
    """Start an embedded broker and grow its log (see the module doc)."""
    args = sys.argv[1:] if argv is None else argv
    chunks = int(args[0]) if args else 15
    size = int(args[1]) if len(args) > 1 else 200
    per_batch = int(args[2]) if len(args) > 2 else 0
    from streams.embedded import EmbeddedServices

    with EmbeddedServices(Settings.from_env(), Path(tempfile.mkdtemp())) as services:
        asyncio.run(_grow(services.settings, chunks, size, per_batch))


if __name__ == "__main__":
    main()
