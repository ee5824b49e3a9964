"""The end-offset probe's modes and what it learns from the ends it finds (no broker needed)."""

from __future__ import annotations

from faust.types import TP

from streams.recovery import EndOffsetProbe
from streams.settings import Settings

A, B = TP("t-users-changelog", 0), TP("t-users-changelog", 1)


def _probe(mode: str) -> EndOffsetProbe:
    return EndOffsetProbe(Settings(kafka_broker="kafka://k:9092", end_offset_probe=mode))


def test_on_and_off_never_change():
    on, off = _probe("on"), _probe("off")
    for p in (on, off):
        p._learn({A: 10}, {A: 10})  # noqa: SLF001
    assert on.enabled and not off.enabled


def test_auto_stays_on_until_a_non_empty_partition_shows_true_ends():
    p = _probe("auto")
    assert p.enabled
    p._learn({A: 0, B: 0}, {A: 0, B: 0})  # noqa: SLF001 - empty changelogs tell nothing
    assert p.enabled and p.short_ends is None
    for _ in range(15):  # Apache Kafka: the reported end is the end; one partition at a time
        p._learn({A: 7, B: 0}, {A: 7, B: 0})  # noqa: SLF001
    assert p.enabled, "a few partitions whose last batch holds one record look right on Tansu too"
    p._learn({A: 7, B: 0}, {A: 7, B: 0})  # noqa: SLF001
    assert p.short_ends is False and not p.enabled


def test_auto_stays_on_for_a_broker_that_reports_ends_short():
    p = _probe("auto")
    p._learn({A: 7, B: 3}, {A: 9, B: 3})  # noqa: SLF001 - Tansu: records past the reported end
    assert p.short_ends is True and p.enabled
    p._learn({A: 9}, {A: 9})  # noqa: SLF001 - one later probe finding nothing does not switch it off
    assert p.enabled
