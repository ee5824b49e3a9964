"""The commit rule that replaces Faust's run-of-consecutive-offsets (faust-streaming#596)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

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


def test_nothing_new_to_commit():
    assert _new_offset(_Consumer([], committed=5), TP) is None
    assert _new_offset(_Consumer([3, 4], committed=5), TP) is None
