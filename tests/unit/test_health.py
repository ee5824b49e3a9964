"""Readiness as /readyz reports it: 503 with the reason during recovery, 200 after."""

from __future__ import annotations

import asyncio

from streams.health import readiness


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TP) and (self.topic, self.partition) == (other.topic, other.partition)


class _Recovery:
    def __init__(self, done: bool) -> None:
        self.completed = asyncio.Event()
        if done:
            self.completed.set()
        self.in_recovery = not done
        tp = _TP("cp-users-changelog", 3)
        self.active_offsets = {tp: 120}
        self.active_highwaters = {tp: 480}

    def active_remaining(self) -> dict:
        return {tp: self.active_highwaters[tp] - off for tp, off in self.active_offsets.items()}


class _App:
    rebalancing = False

    def __init__(self, done: bool, assigned: bool = True) -> None:
        self.tables = type("T", (), {"recovery": _Recovery(done)})()
        parts = {_TP("views", 3)} if assigned else set()
        self.consumer = type("C", (), {"assignment": staticmethod(lambda: parts)})()


def test_not_ready_while_tables_recover_with_how_much_is_left():
    ready, reasons = readiness(_App(done=False), None)
    assert not ready
    assert any("recovering tables: 360 changelog records" in r and "cp-users-changelog[3]" in r for r in reasons)


def test_ready_once_recovered_and_assigned():
    assert readiness(_App(done=True), None) == (True, [])


def test_not_ready_without_partitions():
    ready, reasons = readiness(_App(done=True, assigned=False), None)
    assert not ready and reasons == ["no partitions assigned"]
