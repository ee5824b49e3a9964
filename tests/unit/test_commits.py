"""The commit rule that replaces Faust's run-of-consecutive-offsets (faust-streaming#596)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from intervaltree import IntervalTree

from streams.commits import _new_offset

TP = ("views", 0)


@dataclass(eq=False)
class _Msg:
    tp: tuple
    offset: int
    acked: bool


class _Consumer:
    def __init__(self, acked: list[int], committed: int | None, inflight: list[int] = ()) -> None:
        self._acked = defaultdict(list, {TP: list(acked)})
        self._acked_index = defaultdict(set, {TP: set(acked)})
        self._committed_offset = defaultdict(lambda: None, {TP: committed})
        self._unacked_messages = {_Msg(TP, o, False) for o in inflight} | {_Msg(("other", 0), 1, False)}


def test_duplicates_and_offsets_below_the_commit_do_not_stall_it():
    """Faust's rule returned 296 here (the run [295] ends at the duplicate), one offset a commit."""
    c = _Consumer([295, 295, 296, 296, *range(297, 788)], committed=296)
    assert _new_offset(c, TP) == 788
    assert c._acked[TP] == [] and c._acked_index[TP] == set()


def test_a_head_gap_after_a_restart_does_not_stop_it():
    """Faust's rule returned None for ever when the first acked offset was 2+ past the commit."""
    c = _Consumer(list(range(315, 657)), committed=309)
    assert _new_offset(c, TP) == 657


def test_never_past_a_message_still_in_flight():
    c = _Consumer([10, 11, 12, 14, 15], committed=10, inflight=[13, 16])
    assert _new_offset(c, TP) == 13
    assert c._acked[TP] == [14, 15]  # kept for the next commit
    c._unacked_messages = set()
    assert _new_offset(c, TP) == 16


def test_offset_gaps_below_the_commit_point_are_forgotten():
    """Faust records an interval per jump in a partition's offsets (transaction markers); only its
    own rule chopped them, so under this one they piled up, one per jump, for ever."""
    c = _Consumer([*range(10, 20), *range(21, 30), 31, 32], committed=10, inflight=[40])
    c._gap = defaultdict(IntervalTree)
    for begin in (20, 30, 35, 45):
        c._gap[TP].addi(begin, begin + 1)
    assert _new_offset(c, TP) == 33
    assert sorted(iv.begin for iv in c._gap[TP]) == [35, 45]  # past the commit point: kept


def test_nothing_new_to_commit():
    assert _new_offset(_Consumer([], committed=5), TP) is None
    assert _new_offset(_Consumer([3, 4], committed=5), TP) is None


class _App:
    def __init__(self, flow_active: bool, generation: int) -> None:
        from mode.utils.queues import FlowControlEvent

        self.flow_control = FlowControlEvent()
        if flow_active:
            self.flow_control.resume()
        else:
            self.flow_control.suspend()
        self.consumer_generation_id = generation

        class _Topics:
            @staticmethod
            def acks_enabled_for(topic: str) -> bool:
                return True

        self.topics = _Topics()


class _AckConsumer:
    """What Faust's ``Consumer.ack`` touches, around a real faust ``Message``."""

    def __init__(self, app: _App) -> None:
        self.app = app
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._committed_offset = defaultdict(lambda: None)
        self._unacked_messages: set = set()
        self._waiting_for_ack = None
        self._n_acked = 0


def _message(offset: int, generation: int):
    from faust.types import TP as FaustTP
    from faust.types.tuples import Message

    return Message("views", 0, offset, 0.0, 0, None, b"k", b"v", None, tp=FaustTP("views", 0),
                   generation_id=generation)


def _ack_fn():
    from faust.transport import consumer

    from streams.commits import install

    install()
    return consumer.Consumer.ack


def test_an_ack_while_flow_control_is_suspended_is_not_committable():
    """A stream skips (and acks) messages it reads once a rebalance suspended flow control; such an
    ack must not move the commit point past a message that was never processed."""
    ack = _ack_fn()
    c = _AckConsumer(_App(flow_active=False, generation=3))
    m = _message(41, generation=3)
    c._unacked_messages.add(m)
    assert ack(c, m) is False
    assert m.acked and m not in c._unacked_messages  # released: wait_empty does not wait for it
    assert c._acked[("views", 0)] == [] and _new_offset(c, ("views", 0)) is None


def test_an_ack_of_an_older_generation_is_not_committable_and_a_current_one_is():
    ack = _ack_fn()
    c = _AckConsumer(_App(flow_active=True, generation=4))
    old, new = _message(7, generation=3), _message(8, generation=4)
    c._unacked_messages |= {old, new}
    assert ack(c, old) is False and old.acked
    assert ack(c, new) is True
    from faust.types import TP as FaustTP

    assert c._acked[FaustTP("views", 0)] == [8]
    assert _new_offset(c, FaustTP("views", 0)) == 7  # offset 7 comes again after the seek


def test_a_skipped_offset_holds_the_commit_until_it_is_processed():
    """The loss the fault suite saw in failovers: a message skipped during a rebalance, then later
    offsets processed; the commit must not pass the skipped one until its redelivery is processed."""
    from faust.types import TP as FaustTP

    ack = _ack_fn()
    app = _App(flow_active=False, generation=5)
    c = _AckConsumer(app)
    skipped = _message(7, generation=5)
    c._unacked_messages.add(skipped)
    ack(c, skipped)  # during the rebalance: released, not committable
    app.flow_control.resume()
    for offset in (6, 8, 9):
        m = _message(offset, generation=5)
        c._unacked_messages.add(m)
        assert ack(c, m) is True
    tp = FaustTP("views", 0)
    assert _new_offset(c, tp) == 7  # not 10: offset 7 was never processed
    again = _message(7, generation=5)  # delivered again after the seek, processed
    c._unacked_messages.add(again)
    ack(c, again)
    assert _new_offset(c, tp) == 10


def test_a_hole_below_the_committed_offset_is_forgotten():
    from faust.types import TP as FaustTP

    ack = _ack_fn()
    app = _App(flow_active=False, generation=2)
    c = _AckConsumer(app)
    tp = FaustTP("views", 0)
    skipped = _message(3, generation=2)
    ack(c, skipped)
    app.flow_control.resume()
    c._committed_offset[tp] = 20  # another owner processed it and committed past it
    m = _message(25, generation=2)
    c._unacked_messages.add(m)
    ack(c, m)
    assert _new_offset(c, tp) == 26


def test_partitions_without_a_commit_are_positioned_by_the_reset_policy_after_the_seek():
    """aiokafka's seek_to_committed leaves a partition with no commit (or a commit of 0) where
    its fetcher got to while Faust dropped the records of the rebalance: its first records were
    never processed. They must be positioned as a group without a commit starts (earliest)."""
    import asyncio

    from aiokafka import TopicPartition

    from streams.commits import _wrap_seek_to_committed

    seen: list[tuple] = []

    class _Kafka:
        def seek(self, tp, offset):
            seen.append(("seek", tp.topic, tp.partition, offset))

        async def seek_to_beginning(self, *tps):
            seen.extend(("beginning", tp.topic, tp.partition) for tp in tps)

        async def seek_to_end(self, *tps):
            seen.extend(("end", tp.topic, tp.partition) for tp in tps)

    committed = {TopicPartition("views", 0): None, TopicPartition("views", 1): 0,
                 TopicPartition("views", 2): 57, TopicPartition("cp-users-changelog", 0): None}

    class _Thread:
        class app:  # noqa: N801 - the attributes faust's consumer thread reaches
            class tables:  # noqa: N801
                changelog_topics = {"cp-users-changelog"}

            class conf:  # noqa: N801
                consumer_auto_offset_reset = "earliest"

        kafka = _Kafka()

        def _ensure_consumer(self):
            return self.kafka

        async def call_thread(self, fun, *args):
            return await fun(*args)

    async def original(self):
        return committed

    result = asyncio.run(_wrap_seek_to_committed(original)(_Thread()))
    assert result is committed
    assert sorted(seen) == [("beginning", "views", 0), ("seek", "views", 1, 0)]


def test_the_producer_buffer_flush_waits_for_what_was_queued_and_only_that():
    """Faust's flush returned when one message took over 0.1 s, with records still queued, and
    the commit that follows it then covered changelog writes not yet sent. Waiting for an empty
    buffer instead would starve commits under steady load: what was queued at the start counts."""
    import asyncio

    import pytest
    from faust.exceptions import ProducerSendError
    from faust.transport.producer import ProducerBuffer

    from streams.commits import install

    install()

    class _Buffer:
        state = "running"
        app = None

        def __init__(self, futs) -> None:
            self.pending = asyncio.Queue()
            for f in futs:
                self.pending.put_nowait(f)

    async def run(fail: bool) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        queued = [loop.create_future() for _ in range(3)]
        buf = _Buffer(queued)
        later = loop.create_future()

        async def sender() -> None:
            for f in queued:
                await asyncio.sleep(0.3)  # each message slower than Faust's 0.1 s
                if fail and f is queued[-1]:
                    f.set_exception(OSError("broker gone"))
                else:
                    f.set_result(None)
            buf.pending.put_nowait(later)  # queued after the flush began: not waited for

        task = asyncio.ensure_future(sender())
        await ProducerBuffer.flush(buf)
        await task
        return sum(1 for f in queued if f.done()), int(later.done())

    assert asyncio.run(run(fail=False)) == (3, 0)
    with pytest.raises(ProducerSendError):
        asyncio.run(run(fail=True))


def test_a_record_the_broker_refused_after_it_left_the_buffer_fails_the_next_commit():
    """A changelog write already handed to aiokafka when the buffer's flush began is not among
    the records that flush waits for: when the broker refused it, Faust logged a warning and the
    commit passed it (the changelog then held an older state than the worker's store). The
    producer's flush now fails once for every refusal since the previous flush, and only once."""
    import asyncio
    from types import SimpleNamespace

    import pytest
    from faust.exceptions import ProducerSendError
    from faust.topics import Topic
    from faust.transport.drivers.aiokafka import Producer

    from streams import commits

    commits.install()
    assert getattr(Topic._on_published, "coursepulse", False) and getattr(Producer.flush, "coursepulse", False)
    flushed = []

    async def original_flush(self) -> None:  # noqa: ANN001 - stands for Faust's flush
        flushed.append(1)

    flush = commits._fail_flush_on_lost_sends(original_flush)
    on_published = commits._track_failures(lambda self, fut, message, producer, state: None)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        delivered, refused = loop.create_future(), loop.create_future()
        delivered.set_result("metadata")
        refused.set_exception(OSError("UnknownError"))
        topic = SimpleNamespace()
        on_published(topic, delivered, message=None, producer=None, state=None)
        await flush(None)  # nothing refused yet: the commit goes on
        on_published(topic, refused, message=None, producer=None, state=None)
        on_published(topic, delivered, message=None, producer=None, state=None)
        with pytest.raises(ProducerSendError, match=r"1 records sent before this commit were not delivered"):
            await flush(None)
        await flush(None)  # counted once: the restart reads the input again, the refusal is behind it

    commits._send_failures[:] = [0, None]
    asyncio.run(run())
    assert len(flushed) == 3
