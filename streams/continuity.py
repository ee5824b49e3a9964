"""Every input record is processed: a gap in a partition's offsets is read again, not skipped.

Faust can lose input records around a rebalance without any error: its fetch loop drops records
of a partition that was paused while they were in flight, cancels the hand-over of a record when
flow is suspended, and counts a jump in offsets as a "gap" to commit past. Most of these are
undone by the seek to the committed offsets that ends every rebalance, but not all (the fault
suite kept losing blocks of 10-12 consecutive records of partitions the surviving worker owned
throughout a failover, and its commit then passed them).

So the ingest agent checks continuity itself. After every seek to the committed offsets (which
Faust makes once recovery is complete, :mod:`streams.commits`) the position of each input
partition is the offset it expects next; each record processed moves it on. A record past the
expected offset means records in between were never processed: that record and the rest of the
partition's records in the batch are released without being processed (the commit point stays
below them, :func:`streams.commits.release_unprocessed`) and the partition is sought back to the
expected offset, so they all come again, in order. A record below it is a redelivery (processed:
event ids de-duplicate). Where the log itself has a gap — transaction markers of a transactional
producer, a compacted topic — a probe read finds no record in between and the partition moves
on from the record it has. Counted in ``offset_gaps`` (``healed`` / ``real``).

A gap at the tail of a partition has no later record to reveal it: :meth:`Continuity.watch`
(every few seconds) finds partitions whose consumer position is past the expected offset while
the ingest stream has been idle, and heals them the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from streams.metrics import metrics

__all__ = ["Continuity", "continuity"]

log = logging.getLogger(__name__)


class Continuity:
    """The next expected offset per input partition, and the gaps found in a batch."""

    def __init__(self) -> None:
        #: (topic, partition) -> the offset the next record should have; absent: not known yet
        self.expected: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> (expected offset, first offset seen past it) found in this batch
        self.gaps: dict[tuple[str, int], tuple[int, int]] = {}
        #: (topic, partition, expected offset) whose gap a probe found records in: records that
        #: were queued before the seek back show the same gap again; it is not probed twice
        self.probed: set[tuple[str, int, int]] = set()
        #: monotonic time of the last record accepted (any input partition)
        self.last_accept = time.monotonic()
        #: the topics checked (the ingest agent's input topics); positions of others are ignored
        self.topics: set[str] = set()

    def track(self, topics: Any) -> None:  # noqa: ANN401 - iterable of topic names
        """Check the continuity of these topics (the ones whose records :meth:`accept` sees)."""
        self.topics.update(topics)

    def positioned(self, positions: dict[tuple[str, int], int]) -> None:
        """The consumer was sought: these are the positions its partitions will be read from."""
        positions = {key: offset for key, offset in positions.items() if key[0] in self.topics}
        self.expected.update(positions)
        for key in positions:
            self.gaps.pop(key, None)
        self.probed = {p for p in self.probed if (p[0], p[1]) not in positions}

    def accept(self, topic: str, partition: int, offset: int) -> bool:
        """Whether a record may be processed now; False: it comes again after :meth:`heal`."""
        key = (topic, partition)
        if key in self.gaps:
            return False
        want = self.expected.get(key)
        if want is not None and offset > want:
            self.gaps[key] = (want, offset)
            return False
        if want is None or offset == want:
            self.expected[key] = offset + 1
        return True

    def batch_accepted(self) -> None:
        """Records of a batch were accepted: the stream is not idle (one clock read per batch)."""
        self.last_accept = time.monotonic()

    async def watch(self, consumer: Any, probe: Any = None, idle_s: float = 10.0) -> int:  # noqa: ANN401
        """Heal tail gaps: partitions read past their expected offset while nothing was accepted
        for ``idle_s`` (the records in between were fetched and never reached the stream)."""
        if self.gaps or time.monotonic() - self.last_accept < idle_s:
            return 0
        for (topic, partition), want in list(self.expected.items()):
            tp = _tp(consumer, topic, partition)
            if tp is None:
                continue
            try:
                position = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - not assigned any more, or closing
                continue
            if position is not None and position > want:
                self.gaps[(topic, partition)] = (want, position)
        return await self.heal(consumer, probe) if self.gaps else 0

    async def heal(self, consumer: Any, probe: Any = None) -> int:  # noqa: ANN401 - faust's consumer
        """Seek every partition with a gap back to its expected offset (or, when the log holds no
        record in the gap, to the first record past it). Returns how many were sought."""
        gaps, self.gaps = self.gaps, {}
        for (topic, partition), (want, seen) in gaps.items():
            real = False
            first = (topic, partition, want) not in self.probed
            if probe is not None and first:
                try:
                    real = not await probe(topic, partition, want, seen)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:  # noqa: BLE001 - not knowing, read the gap again
                    log.warning("probe of %s[%d] %d..%d failed", topic, partition, want, seen, exc_info=True)
            if not real:
                self.probed.add((topic, partition, want))
            target = seen if real else want
            tp = _tp(consumer, topic, partition)
            if tp is None:
                continue
            if real:
                metrics.inc("offset_gaps", "real")
            else:
                metrics.inc("offset_gaps", "healed")
                log.log(logging.WARNING if first else logging.INFO,"%s[%d]: records %d..%d were never processed (the consumer skipped them): "
                            "reading them again", topic, partition, want, seen - 1)
            self.expected[(topic, partition)] = target
            await consumer.seek(tp, target)
        return len(gaps)


def _tp(consumer: Any, topic: str, partition: int) -> Any:  # noqa: ANN401
    for tp in consumer.assignment():
        if tp.topic == topic and tp.partition == partition:
            return tp
    return None


async def records_between(settings: Any, topic: str, partition: int, start: int, end: int) -> bool:  # noqa: ANN401
    """Whether the log holds any record at offsets ``start`` .. ``end - 1`` (a standalone read)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.kafka_auth import aiokafka_kwargs

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings),
                                group_id=None, enable_auto_commit=False, auto_offset_reset="latest",
                                fetch_max_wait_ms=100, request_timeout_ms=10_000)
    await consumer.start()
    try:
        atp = TopicPartition(topic, partition)
        consumer.assign([atp])
        consumer.seek(atp, start)
        for _ in range(20):  # a few seconds at most
            batch = await consumer.getmany(atp, timeout_ms=250)
            records = batch.get(atp) or []
            if records:
                return records[0].offset < end
        return True  # nothing answered: assume the records are there (read them again)
    finally:
        await consumer.stop()


#: the worker's continuity of its input partitions
continuity = Continuity()
