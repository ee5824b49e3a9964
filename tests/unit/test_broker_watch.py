"""The broker-loss watch gives up on lost changelog records, not on a short end report."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

import streams.recovery
from streams.health import BrokerLostError, BrokerWatch
from streams.settings import Settings


class _Consumer:
    """What the watch asks of its client: topics, partitions, reported ends (a script of them)."""

    def __init__(self, reports: list[int]) -> None:
        self.reports = reports

    async def topics(self) -> set[str]:
        return {"app-users-changelog"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {1}

    async def end_offsets(self, tps: list) -> dict:
        return {tp: self.reports.pop(0) for tp in tps}


def _watch(reports: list[int]) -> BrokerWatch:
    table = SimpleNamespace(changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-users-changelog"))
    tables = SimpleNamespace(values=lambda: [table], recovery=SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True)))
    watch = BrokerWatch(SimpleNamespace(tables=tables), Settings())
    watch._consumer = _Consumer(reports)  # noqa: SLF001 - the client the watch would start
    return watch


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """What a fetch to the end finds (``end``, set by the test; the probe never lowers the
    reported end here) and which ends it was asked to confirm (``asked``)."""
    found = SimpleNamespace(end=0, asked=[])

    async def true_ends(self, reported: dict) -> dict:  # noqa: ANN001
        found.asked.append({(tp.topic, tp.partition): end for tp, end in reported.items()})
        return {tp: max(end, found.end) for tp, end in reported.items()}

    monkeypatch.setattr(streams.recovery.EndOffsetProbe, "true_ends", true_ends)
    return found


def test_an_end_reported_short_is_confirmed_by_a_fetch_and_is_no_loss(fetched) -> None:
    watch = _watch([42, 4, 43])
    asyncio.run(watch._check())  # noqa: SLF001
    assert watch.ends == {("app-users-changelog", 1): 42} and fetched.asked == []
    fetched.end = 42  # the records are all there: the broker reported the start of the last batch
    asyncio.run(watch._check())  # noqa: SLF001 - no BrokerLostError
    assert fetched.asked == [{("app-users-changelog", 1): 4}]
    assert watch.ends == {("app-users-changelog", 1): 42}
    asyncio.run(watch._check())  # noqa: SLF001
    assert watch.ends == {("app-users-changelog", 1): 43} and len(fetched.asked) == 1


def test_an_end_a_fetch_confirms_lower_is_lost_records(fetched) -> None:
    watch = _watch([42, 4])
    asyncio.run(watch._check())  # noqa: SLF001
    fetched.end = 5  # the broker came back with 5 records where 42 were
    with pytest.raises(BrokerLostError, match=r"end 42 -> 5"):
        asyncio.run(watch._check())  # noqa: SLF001


def test_held_sends_are_released_only_by_a_check_begun_after_the_break(fetched) -> None:
    from streams.health import SendGate

    watch = _watch([42, 42, 42])
    watch.gate = gate = SendGate()
    asyncio.run(watch.check_once())
    assert gate.is_open and watch.checks_begun == 1
    gate.close(watch.checks_begun, "a connection to the broker broke")
    assert not gate.is_open and gate.holds == 1
    gate.checked(1)  # a check that began before the break says nothing about the broker after it
    assert not gate.is_open
    asyncio.run(watch.check_once())  # begun after the break, every end where it was
    assert gate.is_open and watch.ends == {("app-users-changelog", 1): 42}


def test_held_sends_stay_held_while_a_changelog_written_to_is_missing(fetched) -> None:
    from streams.health import SendGate

    watch = _watch([42])
    watch.gate = gate = SendGate()
    asyncio.run(watch.check_once())
    watch.app.tables.recovery.completed = SimpleNamespace(is_set=lambda: False)  # a restart's recovery
    watch._consumer.topics = _no_topics  # noqa: SLF001 - the broker came back without them
    gate.close(watch.checks_begun, "a connection to the broker broke")
    asyncio.run(watch.check_once())
    assert not gate.is_open, "records written to a changelog the broker no longer has must not follow it"


async def _no_topics() -> set[str]:
    return set()


def test_a_held_send_waits_for_the_gate() -> None:
    from streams.health import SendGate

    async def scenario() -> list[str]:
        gate, seen = SendGate(), []
        gate.close(0, "a connection to the broker broke")

        async def send() -> None:
            await gate.wait()
            seen.append("sent")

        task = asyncio.ensure_future(send())
        await asyncio.sleep(0.05)
        seen.append("still held")
        gate.checked(1)
        await task
        return seen

    assert asyncio.run(scenario()) == ["still held", "sent"]
