"""Committed offsets that never stall: a workaround for faust-streaming#596.

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
offsets below it are forgotten. Faust's flush of the producer before a commit is unchanged, so
what the acknowledged events caused is in Kafka before their offsets are committed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]  # noqa: SLF001 - faust's own bookkeeping, replaced here
    if not acked:
        return None
    top = max(acked) + 1
    inflight = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]  # noqa: SLF001
    if inflight:
        top = min(top, min(inflight))
    keep = [o for o in acked if o >= top]
    acked[:] = sorted(set(keep))
    self._acked_index[tp] = set(acked)  # noqa: SLF001
    committed = self._committed_offset[tp]  # noqa: SLF001
    if committed is not None and top <= committed:
        return None
    return top


def install() -> None:
    """Replace ``faust.transport.consumer.Consumer._new_offset`` (idempotent)."""
    from faust.transport import consumer

    if getattr(consumer.Consumer._new_offset, "coursepulse", False):  # noqa: SLF001
        return
    _new_offset.coursepulse = True  # type: ignore[attr-defined]
    consumer.Consumer._new_offset = _new_offset  # noqa: SLF001
