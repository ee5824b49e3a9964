"""Does the embedded broker slow down as its log grows? Produce ``chunks`` x 100,000 records of
``bytes`` each (default 200) to one topic (12 partitions) of a fresh embedded Tansu and print,
after each chunk, the produce rate and one record's produce-to-fetch round trip at the tail.

Run: ``python -m tools.bench.broker_growth [chunks] [bytes]`` (default 15, i.e. 1.5 million
records).
A diagnostic for docs/reliability.md (the soak's slow-down), not part of ``coursepulse bench``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from streams.settings import Settings

CHUNK = 100_000


async def _grow(settings: Settings, chunks: int, size: int = 200) -> None:
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
            futures = [await producer.send(topic, value, key=b"k%d" % i, partition=i % 12) for i in range(CHUNK)]
            await asyncio.gather(*futures)
            rate = CHUNK / (time.perf_counter() - t)
            consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers, group_id=None, enable_auto_commit=False)
            await consumer.start()
            try:
                tp = TopicPartition(topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_end(tp)
                t = time.perf_counter()
                await producer.send_and_wait(topic, value, key=b"z", partition=0)
                await consumer.getmany(tp, timeout_ms=5000)
                tail_ms = (time.perf_counter() - t) * 1000
            finally:
                await consumer.stop()
            print(f"records {chunk * CHUNK:>9,}  produce {rate:>8,.0f} rec/s  tail round trip {tail_ms:6.1f} ms",
                  flush=True)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> None:
    """Start an embedded broker and grow its log (see the module doc)."""
    args = sys.argv[1:] if argv is None else argv
    chunks = int(args[0]) if args else 15
    size = int(args[1]) if len(args) > 1 else 200
    from streams.embedded import EmbeddedServices

    with EmbeddedServices(Settings.from_env(), Path(tempfile.mkdtemp())) as services:
        asyncio.run(_grow(services.settings, chunks, size))


if __name__ == "__main__":
    main()
