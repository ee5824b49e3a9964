"""The ingest agent's check that every input record is processed (streams/continuity.py)."""

from __future__ import annotations

import asyncio

from streams.continuity import Continuity


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _Consumer:
    def __init__(self, *tps: tuple[str, int], positions: dict | None = None) -> None:
        self.tps = [_TP(t, p) for t, p in tps]
        self.sought: list[tuple[str, int, int]] = []
        self.positions = positions or {}

    def assignment(self):
        return self.tps

    async def seek(self, tp, offset):
        self.sought.append((tp.topic, tp.partition, offset))

    async def position(self, tp):
        return self.positions.get((tp.topic, tp.partition))


def _c() -> Continuity:
    c = Continuity()
    c.track(["views"])
    return c


def test_only_tracked_topics_are_positioned():
    """Other agents' topics (course-cooc, referral links) are read by streams that never report
    their records here: they must not look like gaps."""
    c = _c()
    c.positioned({("views", 0): 3, ("course-cooc", 0): 40})
    assert c.expected == {("views", 0): 3}


def test_a_record_past_the_expected_offset_and_the_rest_of_its_partition_wait_for_a_seek_back():
    c = _c()
    c.positioned({("views", 0): 10, ("views", 1): 4})
    assert c.accept("views", 0, 10) and c.accept("views", 0, 11)
    assert not c.accept("views", 0, 23)  # 12..22 were never processed
    assert not c.accept("views", 0, 24)  # the rest of the partition waits too
    assert c.accept("views", 1, 4)  # other partitions go on
    consumer = _Consumer(("views", 0), ("views", 1))

    async def records_there(topic, partition, start, end):
        return True

    assert asyncio.run(c.heal(consumer, records_there)) == 1
    assert consumer.sought == [("views", 0, 12)]
    assert c.accept("views", 0, 12) and c.accept("views", 0, 13)


def test_a_redelivery_below_the_expected_offset_is_processed_and_does_not_move_it():
    c = _c()
    c.positioned({("views", 0): 10})
    assert c.accept("views", 0, 7)
    assert c.expected[("views", 0)] == 10
    assert c.accept("views", 0, 10) and c.expected[("views", 0)] == 11


def test_a_real_gap_in_the_log_moves_on_from_the_record_past_it():
    """Transaction markers or compaction: no record in the gap, so it is not read again."""
    c = _c()
    c.positioned({("views", 0): 5})
    assert not c.accept("views", 0, 7)
    consumer = _Consumer(("views", 0))

    async def nothing_there(topic, partition, start, end):
        return False

    asyncio.run(c.heal(consumer, nothing_there))
    assert consumer.sought == [("views", 0, 7)]
    assert c.accept("views", 0, 7)


def test_unknown_partitions_start_at_their_first_record():
    c = _c()
    assert c.accept("views", 3, 41) and c.expected[("views", 3)] == 42


def test_the_watch_heals_a_tail_gap_only_when_the_stream_is_idle():
    c = _c()
    c.positioned({("views", 0): 10})
    consumer = _Consumer(("views", 0), positions={("views", 0): 15})
    assert asyncio.run(c.watch(consumer, idle_s=60.0)) == 0  # records may still be in flight
    c.last_accept -= 120
    assert asyncio.run(c.watch(consumer, idle_s=60.0)) == 1
    assert consumer.sought == [("views", 0, 10)]


def test_a_gap_shown_again_by_records_queued_before_the_seek_back_is_not_probed_again():
    c = _c()
    c.positioned({("views", 0): 90})
    consumer = _Consumer(("views", 0))
    probes: list[int] = []

    async def records_there(topic, partition, start, end):
        probes.append(start)
        return True

    assert not c.accept("views", 0, 95)
    asyncio.run(c.heal(consumer, records_there))
    assert not c.accept("views", 0, 96)  # queued before the seek: the same gap
    asyncio.run(c.heal(consumer, records_there))
    assert probes == [90] and consumer.sought == [("views", 0, 90), ("views", 0, 90)]
    assert c.accept("views", 0, 90)
