"""Topic administration with aiokafka: create every topic with an explicit partition count."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from schemas.topics import TOPICS, spec
from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings

__all__ = ["ALL_TOPICS", "COMPACTED", "create_topics", "wait_for_broker"]

log = logging.getLogger(__name__)

#: every topic's logical name, from the registry (schemas.topics)
ALL_TOPICS = tuple(t.name for t in TOPICS)
COMPACTED = frozenset(t.name for t in TOPICS if t.compacted)


async def wait_for_broker(settings: Settings, timeout: float = 30.0) -> AIOKafkaAdminClient:
    """An admin client connected to the broker, retrying until ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), request_timeout_ms=10_000)
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def _partitions(name: str, settings: Settings) -> int:
    return (spec(name).partitions if name in ALL_TOPICS else None) or settings.partitions


def _compacted(name: str) -> bool:
    return name in ALL_TOPICS and spec(name).compacted


async def create_topics(settings: Settings, names: tuple[str, ...] = ALL_TOPICS) -> list[str]:
    """Create the project's topics (idempotent); return the full names that were created.

    A name outside the registry (a tool's scratch topic, e.g. the benchmark's) is created with
    the settings' partition count and no compaction."""
    admin = await wait_for_broker(settings)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                settings.topic(name),
                num_partitions=_partitions(name, settings),
                replication_factor=settings.replication,
                topic_configs={"cleanup.policy": "compact"} if _compacted(name) else {},
            )
            for name in names
            if settings.topic(name) not in existing
        ]
        for topic in new:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    if created:
        log.info("created %d topics with %d partitions: %s", len(created), settings.partitions, ", ".join(created))
    return created
