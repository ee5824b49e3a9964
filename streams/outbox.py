"""The output records of a batch, sent through the app's producer as one aiokafka batch per topic
partition instead of one Faust ``Topic.send`` per record.

Faust's ``Topic.send`` costs 100-190 us per record (its producer-start wrapper yields to the loop
several times per send, so aiokafka ships tiny batches); building an aiokafka batch and handing
it to the producer costs a few us per record (docs/benchmark.md). The records a batch owes
(profiles, lists, alerts, candidates, referral links, co-occurrence bundles, neighbour lists)
are queued with :meth:`Outbox.add` and sent by :meth:`Outbox.send` before the batch ends.

At-least-once is unchanged: Faust commits an offset only after ``producer.flush()``, which waits
for every batch in aiokafka's accumulator, and :func:`wait_delivered` (called by that flush,
``streams.commits``) raises ``ProducerSendError`` when a batch sent before the flush failed,
so the commit does not pass a lost output and the worker reads the input again.

Given up on this path: Faust's per-record send sensors are called by the outbox itself
(``on_send_initiated``, so ``records_sent`` and the operator page see every record), not
``on_send_completed``; the record timestamp is the send time as with ``Topic.send``.
``COURSEPULSE_PROCESSING_GUARANTEE=exactly_once`` sends through ``Topic.send`` (Faust's
transactional producer per partition), as does ``COURSEPULSE_DIRECT_SEND=false``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams.partitioning import partition_for

__all__ = ["Outbox", "wait_delivered"]

log = logging.getLogger(__name__)


class _Sent:
    """What Faust's sensors look at in a message being sent."""

    __slots__ = ("key", "value")

    def __init__(self, key: bytes | None, value: bytes) -> None:
        self.key, self.value = key, value


class Outbox:
    """Records queued per (topic, partition) in order; :meth:`send` ships each group as one batch."""

    def __init__(self, app: Any, direct: bool) -> None:  # noqa: ANN401 - a faust App
        self.app = app
        #: false: every record goes through ``Topic.send`` (exactly-once, or switched off)
        self.direct = direct
        self._queued: dict[tuple[Any, int], list[tuple[bytes | None, bytes]]] = {}
        #: futures of batches handed to aiokafka and not yet known delivered
        self._pending: list[asyncio.Future[Any]] = []

    def add(self, topic: Any, key: bytes | None, value: bytes, partition: int | None = None) -> None:  # noqa: ANN401
        """Queue one record for ``topic`` (a Faust topic); no partition: murmur2 of the key, as a
        keyed send to Kafka's default partitioner would give."""
        if partition is None:
            if key is None:
                msg = "a record with neither key nor partition cannot be placed"
                raise ValueError(msg)
            partition = partition_for(key, topic.partitions or self.app.conf.topic_partitions)
        self._queued.setdefault((topic, partition), []).append((key, value))

    def __len__(self) -> int:
        return sum(len(records) for records in self._queued.values())

    async def send(self) -> int:
        """Hand every queued record to the producer (in order per partition); returns how many."""
        queued, self._queued = self._queued, {}
        if not queued:
            return 0
        n = 0
        if not self.direct:
            for (topic, partition), records in queued.items():
                for key, value in records:
                    await topic.send(key=key, value=value, partition=partition)
                    n += 1
            return n
        producer = self.app.producer._ensure_producer()  # noqa: SLF001 - aiokafka's producer: Faust exposes no batch send
        sensors = self.app.sensors
        faust_producer = self.app.producer
        self._pending = [fut for fut in self._pending if not fut.done() or _failed(fut)]
        for (topic, partition), records in queued.items():
            name = topic.get_topic_name()
            batch = producer.create_batch()
            for key, value in records:
                sensors.on_send_initiated(faust_producer, name, _Sent(key, value), len(key or b""), len(value))
                if batch.append(key=key, value=value, timestamp=None) is None:
                    self._pending.append(await producer.send_batch(batch, name, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        msg = f"a record of {len(value)} bytes does not fit a batch of {name}"
                        raise ValueError(msg)
                n += 1
            self._pending.append(await producer.send_batch(batch, name, partition=partition))
        return n

    async def wait_delivered(self) -> None:
        """Wait for every batch sent so far; raise ``ProducerSendError`` if one was not delivered."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        await asyncio.wait(pending)
        failed = [fut for fut in pending if _failed(fut)]
        if failed:
            from faust.exceptions import ProducerSendError

            first = failed[0].exception() if not failed[0].cancelled() else "cancelled"
            msg = f"{len(failed)} of {len(pending)} output batches were not delivered ({first!r})"
            raise ProducerSendError(msg)


def _failed(fut: asyncio.Future[Any]) -> bool:
    return fut.done() and (fut.cancelled() or fut.exception() is not None)


#: every outbox of this process (the app's one, and tests'); the flush before a commit waits for them
_OUTBOXES: list[Outbox] = []


def register(outbox: Outbox) -> Outbox:
    """Have the producer flush before each commit wait for ``outbox``'s batches."""
    _OUTBOXES.append(outbox)
    return outbox


async def wait_delivered() -> None:
    """Wait for the batches of every registered outbox (``streams.commits`` calls it in the
    producer flush that precedes a commit)."""
    for outbox in list(_OUTBOXES):
        await outbox.wait_delivered()
