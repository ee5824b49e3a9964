"""Committed offsets that never stall and never pass an unprocessed message.

Four fixes to Faust's offset handling, each found by the fault suite (``tests/fault``).

Fresh partitions after a rebalance (the third fix, :func:`_install_seek_reset`). When a worker
is assigned a partition, Faust's recovery ends with "seek stream partitions to committed
offsets", so that whatever was fetched during the rebalance is fetched again. aiokafka's
``seek_to_committed`` only seeks partitions whose committed offset is above 0: a partition
nobody has committed yet (a young topic, or one whose previous owner died before its first
commit) keeps the position its fetcher reached while Faust discarded records during the
rebalance (records of a partition paused or not yet active are dropped by Faust's ``getmany``).
Its first records were then never processed, and the partition's commit never started (the
fault suite: a survivor that took over two partitions of a killed worker processed none of
their ~1,300 events; small topics such as ``shares`` lost their first records). Such partitions
are now positioned as Kafka positions a group with no committed offset: by
``consumer_auto_offset_reset`` (``earliest`` here: from the beginning). Changelog partitions are
left alone (recovery positions those itself).

The producer flush before a commit really drains (the fourth fix, :func:`_install_full_flush`),
the output batches of ``streams.outbox`` included, and fails when any record Faust sent since the
previous flush was not delivered (a changelog write already handed to aiokafka when the flush
began was otherwise dropped with a warning, and the commit passed it).
Faust commits only after ``producer.flush()``, whose buffer part (``ProducerBuffer.flush``: table
changelog writes and every ``send_soon``) gives up as soon as one message takes more than 0.1 s
to go out — on a loaded machine, or a slow broker, it returned with records still queued, the
offsets were committed, and a kill then lost state changes whose input would never be read
again. The flush now waits until every message queued when it began is delivered (those are the
ones the committed offsets cover), and a failed one stops the commit.

The first fix: a workaround for faust-streaming#596.

Faust commits, per partition, the end of the first run of consecutive offsets in its list of
acknowledged offsets. After a restart or a rebalance that list can hold offsets twice and offsets
below the committed one (a message delivered before and after the seek to the committed offset):
the run then ends after one number, and the commit crawls forward by one offset per commit
interval, or, when the run starts more than one past the committed offset, stops for good. The
fault suite saw both after a kill -9 (the group 590-1,400 records behind a worker that had
processed everything, so every later restart re-processed them).

What may be committed is simpler than a run of numbers: messages of a partition reach the
streams in offset order, so every delivered message below the largest acknowledged offset was
acknowledged unless it is still in flight. The commit point is therefore the smallest offset in
flight (delivered, not acknowledged) or else the largest acknowledged offset + 1; acknowledged
offsets below it are forgotten, and so are the offset gaps Faust records when a partition's
offsets jump (transaction markers, compaction: an interval per jump in ``Consumer._gap``, which
only Faust's own rule chopped; this rule passes gaps by itself, and left them to pile up). Faust's flush of the producer before a commit is unchanged, so
what the acknowledged events caused is in Kafka before their offsets are committed.

Acknowledgements that must not move the commit point (the second fix). When a rebalance starts,
Faust suspends flow control; a stream that then reads a message from its queue *skips* it (it is
never processed) and acknowledges it, "so that the lag does not grow" — and so does a message of
an older consumer generation. The commit of the revoked partitions, made right after, then
covered the skipped message: it was never processed and, the offset being committed, never
delivered again (the fault suite lost a few users' events in every failover and in some kill -9
restarts, where the group rebalances once more when the dead member is expelled). An
acknowledgement received while flow control is suspended or for a message of another
generation therefore releases the message (so shutdown and rebalance do not wait for it) but
leaves a *hole*: the commit point stays at or below the hole's offset until that offset is
acknowledged by a processing stream (after the rebalance the owner seeks to the committed
offset and gets it again) or the committed offset passed it (another owner processed it). So
the partition's owner — this worker or another — gets the message again (at least once; event
ids de-duplicate what was processed). Counted in ``acks_held_back``.
"""

from __future__ import annotations

from typing import Any

from streams.metrics import metrics

__all__ = ["install", "release_unprocessed"]


def _holes(consumer: Any) -> dict[Any, set[int]]:
    """Per partition, offsets a stream skipped (acknowledged, never processed), not yet processed."""
    holes = consumer.__dict__.get("_coursepulse_holes")
    if holes is None:
        holes = consumer.__dict__["_coursepulse_holes"] = {}
    return holes


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]  # noqa: SLF001 - faust's own bookkeeping, replaced here
    if not acked:
        return None
    committed = self._committed_offset[tp]  # noqa: SLF001
    top = max(acked) + 1
    inflight = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]  # noqa: SLF001
    if inflight:
        top = min(top, min(inflight))
    holes = _holes(self).get(tp)
    if holes:
        if committed is not None:  # below the commit: processed since (here or by another owner)
            holes.difference_update([h for h in holes if h < committed])
        if holes:
            top = min(top, min(holes))
    keep = [o for o in acked if o >= top]
    acked[:] = sorted(set(keep))
    self._acked_index[tp] = set(acked)  # noqa: SLF001
    gaps = getattr(self, "_gap", {}).get(tp)  # noqa: SLF001 - faust's offset gaps, see below
    if gaps:
        gaps.chop(0, top)
    if committed is not None and top <= committed:
        return None
    return top


def _stale(consumer: Any, message: Any) -> bool:
    """Whether an acknowledgement of ``message`` now may be one of a message the stream skipped."""
    app = consumer.app
    flow = getattr(app, "flow_control", None)
    if flow is not None and not flow.is_active():
        return True
    generation = getattr(message, "generation_id", None)
    return generation is not None and generation != getattr(app, "consumer_generation_id", generation)


def release_unprocessed(consumer: Any, message: Any) -> bool:
    """Release ``message`` without processing it: nothing waits for it any more, and the commit
    point stays at or below its offset until it is delivered again and processed (a *hole*).
    Returns False when it was already acknowledged."""
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    with ack_lock:
        if message.acked:
            return False
        message.acked = True
        consumer._unacked_messages.discard(message)  # noqa: SLF001 - released, not committable
        _holes(consumer).setdefault(message.tp, set()).add(message.offset)
        notify(consumer._waiting_for_ack)  # noqa: SLF001
    return True


def _wrap_ack(original: Any) -> Any:

    def ack(self: Any, message: Any) -> bool:
        if message.acked:
            return original(self, message)
        if not _stale(self, message):
            holes = _holes(self).get(message.tp)
            if holes:
                holes.discard(message.offset)  # the skipped offset, delivered again and processed
            return original(self, message)
        # after the rebalance the partition's owner seeks to the committed offset and gets it again
        if release_unprocessed(self, message):
            metrics.inc("acks_held_back")
        return False

    ack.coursepulse = True  # type: ignore[attr-defined]
    return ack


async def _positions(consumer: Any, partitions: list[Any]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for tp in partitions:
        try:
            out[(tp.topic, tp.partition)] = int(await consumer.position(tp))
        except Exception:  # noqa: BLE001, S112 - not assigned any more: nothing expected of it
            continue
    return out


async def _reset_positions(consumer: Any, partitions: list[Any], committed: dict[Any, Any], reset: str) -> None:
    """Position ``partitions`` (no committed offset above 0) as a group without a commit starts."""
    unset = [tp for tp in partitions if committed.get(tp) is None]
    at_zero = [tp for tp in partitions if committed.get(tp) == 0]
    for tp in at_zero:
        consumer.seek(tp, 0)
    if unset and reset == "earliest":
        await consumer.seek_to_beginning(*unset)
    elif unset and reset == "latest":
        await consumer.seek_to_end(*unset)


def _wrap_seek_to_committed(original: Any) -> Any:
    async def seek_to_committed(self: Any) -> Any:
        committed = await original(self)
        changelogs = set(self.app.tables.changelog_topics)
        fresh = [tp for tp, offset in committed.items()
                 if (offset is None or offset <= 0) and tp.topic not in changelogs]
        if fresh:
            reset = str(self.app.conf.consumer_auto_offset_reset or "earliest")
            await self.call_thread(_reset_positions, self._ensure_consumer(), fresh, dict(committed), reset)
            metrics.inc("fresh_partition_seeks", by=len(fresh))
        from streams.continuity import continuity

        streams_tps = [tp for tp in committed if tp.topic in continuity.topics]
        if streams_tps:  # where every checked partition is read from now (streams/continuity.py)
            continuity.positioned(await self.call_thread(_positions, self._ensure_consumer(), streams_tps))
        return committed

    seek_to_committed.coursepulse = True  # type: ignore[attr-defined]
    return seek_to_committed


def _install_seek_reset() -> None:
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    if not getattr(cls.seek_to_committed, "coursepulse", False):
        cls.seek_to_committed = _wrap_seek_to_committed(cls.seek_to_committed)


async def _full_flush(self: Any) -> None:
    """Wait until every message queued (or being sent) when the flush began was delivered.

    Messages queued after it began belong to later offsets: waiting for an empty buffer instead
    would starve commits under steady load. A message that failed to send stops the commit
    (``ProducerSendError``: the worker restarts and reads the input again) instead of committing
    past a lost changelog write.
    """
    import asyncio
    import logging

    from faust.exceptions import ProducerSendError

    from streams.outbox import wait_delivered

    app = getattr(self, "app", None)
    if app is not None and app.conf.producer_threaded:
        await _faust_flush(self)
        await wait_delivered()
        return
    pending = list(getattr(self.pending, "_queue", ()))
    sending = self.__dict__.get("_coursepulse_sending")
    if sending is not None:
        pending.insert(0, sending)
    if pending and self.state != "running":
        msg = "Cannot flush: Producer not Running"
        raise RuntimeError(msg)
    while True:
        open_ = [fut for fut in pending if not fut.done()]
        if not open_:
            break
        done, _ = await asyncio.wait(open_, timeout=10.0)
        if not done:
            logging.getLogger(__name__).warning(
                "producer flush: %d of %d messages not delivered after 10 s; the commit waits", len(open_), len(pending))
    failed = [fut for fut in pending if fut.cancelled() or fut.exception() is not None]
    if failed:
        msg = f"{len(failed)} of {len(pending)} messages flushed before a commit were not delivered"
        raise ProducerSendError(msg)
    await wait_delivered()  # the output batches sent past Topic.send (streams/outbox.py)


def _track_sending(original: Any) -> Any:
    async def send_pending(self: Any, fut: Any) -> None:
        self.__dict__["_coursepulse_sending"] = fut
        try:
            await original(self, fut)
        finally:
            self.__dict__["_coursepulse_sending"] = None

    send_pending.coursepulse = True  # type: ignore[attr-defined]
    return send_pending


_faust_flush: Any = None

#: records Faust sent that the broker did not take (changelog writes, ``send_soon``,
#: ``Topic.send``) since the last producer flush: ``[count, first error]``
_send_failures: list[Any] = [0, None]


def _track_failures(original: Any) -> Any:
    def on_published(self: Any, fut: Any, message: Any, producer: Any, state: Any) -> None:  # noqa: ANN401
        original(self, fut, message, producer, state)
        if not fut.cancelled() and fut.exception() is not None:
            if not _send_failures[0]:
                _send_failures[1] = fut.exception()
            _send_failures[0] += 1
            metrics.inc("send_failures")

    on_published.coursepulse = True  # type: ignore[attr-defined]
    return on_published


def _fail_flush_on_lost_sends(original: Any) -> Any:
    async def flush(self: Any) -> None:
        """The producer's flush, then: a record sent earlier that the broker did not take stops
        the commit this flush precedes (``ProducerSendError``: Faust crashes the worker, its
        supervisor restarts it, and the input since the last commit is read again).

        The buffer's flush only sees the records still queued when it starts; a changelog write
        already handed to aiokafka whose produce failed was logged by Faust and dropped, and
        the commit then passed it: the state it carried was in the local store but not in the
        changelog, so a new owner (or a restart on the memory store) read an older state."""
        from faust.exceptions import ProducerSendError

        await original(self)
        failed, first = _send_failures
        if failed:
            _send_failures[0], _send_failures[1] = 0, None
            msg = f"{failed} records sent before this commit were not delivered (first: {first!r})"
            raise ProducerSendError(msg)

    flush.coursepulse = True  # type: ignore[attr-defined]
    return flush


def _install_full_flush() -> None:
    global _faust_flush  # noqa: PLW0603 - the original, kept once
    from faust.topics import Topic
    from faust.transport.drivers.aiokafka import Producer
    from faust.transport.producer import ProducerBuffer

    if not getattr(ProducerBuffer.flush, "coursepulse", False):
        _faust_flush = ProducerBuffer.flush
        _full_flush.coursepulse = True  # type: ignore[attr-defined]
        ProducerBuffer.flush = _full_flush  # type: ignore[method-assign]
        ProducerBuffer._send_pending = _track_sending(ProducerBuffer._send_pending)  # noqa: SLF001
    if not getattr(Topic._on_published, "coursepulse", False):  # noqa: SLF001
        Topic._on_published = _track_failures(Topic._on_published)  # type: ignore[method-assign]  # noqa: SLF001
    if not getattr(Producer.flush, "coursepulse", False):
        Producer.flush = _fail_flush_on_lost_sends(Producer.flush)  # type: ignore[method-assign]


def install() -> None:
    """Replace ``Consumer._new_offset``, wrap ``Consumer.ack`` and the seek to committed offsets,
    and make the producer buffer's flush drain it (idempotent)."""
    from faust.transport import consumer

    _install_seek_reset()
    _install_full_flush()

    if not getattr(consumer.Consumer._new_offset, "coursepulse", False):  # noqa: SLF001
        _new_offset.coursepulse = True  # type: ignore[attr-defined]
        consumer.Consumer._new_offset = _new_offset  # noqa: SLF001
    if not getattr(consumer.Consumer.ack, "coursepulse", False):
        consumer.Consumer.ack = _wrap_ack(consumer.Consumer.ack)
