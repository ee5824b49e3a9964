"""``coursepulse replay``: an event file to the topics in event-time order."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from schemas.eventfile import read_events
from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings

__all__ = ["run_replay"]

log = logging.getLogger(__name__)

def run_replay(args: argparse.Namespace) -> int:
    """Produce the file to the topics in event-time order, ``--speed`` times real time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.admin import create_topics
    from streams.producer import to_wire

    settings = Settings.from_env()
    if not settings.kafka_broker:
        print("KAFKA_BROKER is not set: start `coursepulse worker` or `coursepulse demo` first and point "
              "KAFKA_BROKER at it", file=sys.stderr)
        return 2
    total = sum(1 for _ in open(args.events, "rb"))
    if args.limit:
        total = min(total, args.limit)

    async def replay() -> int:
        from aiokafka import AIOKafkaProducer

        await create_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=10,
                                    max_request_size=1_048_576)
        await producer.start()
        sent = 0
        first_ts = None
        started = time.monotonic()
        try:
            with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                          TextColumn("{task.fields[rate]:,.0f} ev/s"), TimeElapsedColumn()) as progress:
                task = progress.add_task("replay", total=total, rate=0.0)
                for record in read_events(args.events):
                    ts = getattr(record, "ts", None) or getattr(record, "published_at", 0)
                    if args.speed > 0:
                        first_ts = ts if first_ts is None else first_ts
                        due = started + (ts - first_ts) / 1000 / args.speed
                        delay = due - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    topic, key, value = to_wire(record)
                    await producer.send(settings.topic(topic), key=key, value=value)
                    sent += 1
                    if sent % 500 == 0 or sent == total:
                        progress.update(task, completed=sent, rate=sent / max(time.monotonic() - started, 1e-9))
                        await asyncio.sleep(0)
                    if args.limit and sent >= args.limit:
                        break
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    sent = asyncio.run(replay())
    print(f"replayed {sent} records to {settings.kafka_broker}")
    return 0
