"""Incremental item-item recommendations: co-occurrence rows, a neighbour index and a ranker.

The three parts live where the data is (DESIGN.md, "Data flow"):

- :func:`cooc_updates` runs where the *user* lives: when a user's engagement with a course rises
  (viewed < completed < bought) it yields the co-occurrence gains of that course with the user's
  other recent courses, as one :class:`RowUpdate` per affected course row.
- :class:`CooccurrenceRows` runs where the *course* lives: it accumulates the updates of its rows,
  decayed in event time, and turns a row into its top-K neighbours with a Numba kernel.
- :class:`NeighbourIndex` is the broadcast copy on every worker (dense arrays), and
  :class:`Ranker` scores a user's candidates from it, with a reason per item.

:class:`OnlineRecommender` wires all three in one process for replay and evaluation.
Decay: every stored weight is multiplied by ``2 ** ((ts - EPOCH) / half_life)`` when added, so a
whole row decays at once without being touched; values are deflated when they are read.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.kernels import (
    MEASURES,
    cooc_gains_batch,
    pair_increments_batch,
    rank_users,
    row_similarities,
    row_similarities_batch,
)
from models.profile import DAY_MS, UserState

__all__ = [
    "LEVEL_WEIGHTS",
    "CoocRises",
    "CooccurrenceRows",
    "NeighbourIndex",
    "OnlineRecommender",
    "Ranker",
    "RowUpdate",
    "apply_update",
    "cooc_updates",
    "engagement_level",
    "inflation",
    "new_row",
    "row_neighbours",
    "rows_csr",
    "rows_neighbours",
]

#: engagement level -> weight: 0 none, 1 viewed, 2 completed, 3 bought
LEVEL_WEIGHTS = (0.0, 1.0, 2.0, 3.0)


def engagement_level(entry: list[Any] | None, completion: float = 0.9) -> int:
    """The engagement level of a ``UserState.courses`` entry: 0 none .. 3 bought."""
    if entry is None:
        return 0
    if entry[3]:
        return 3
    return 2 if entry[1] >= completion else 1


@dataclass(frozen=True, slots=True)
class RowUpdate:
    """Gains for one course row: its popularity and its co-occurrence with other courses."""

    course_id: str
    ts: int
    pop_delta: float
    pairs: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"course_id": self.course_id, "ts": self.ts, "pop_delta": self.pop_delta,
                "pairs": [list(p) for p in self.pairs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowUpdate:
        return cls(data["course_id"], int(data["ts"]), float(data["pop_delta"]),
                   tuple((str(o), float(d)) for o, d in data["pairs"]))


def _cooc_gains(state: UserState, course_id: str, old_level: int, new_level: int, ts: int,
                max_history: int, window_ms: int, completion: float) -> list[tuple[str, float]]:
    """``(other course, gain)`` of each pair with a positive gain (see :func:`cooc_updates`).

    The gain is :func:`models.kernels.pair_increments` (``min(new_w, o) - min(old_w, o)``),
    computed here in plain Python: for the few recent courses of one user that is cheaper than a
    kernel call, and the same IEEE arithmetic gives the same values.
    """
    old_w, new_w = LEVEL_WEIGHTS[old_level], LEVEL_WEIGHTS[new_level]
    others = [
        (c, e) for c, e in state.courses.items()
        if c != course_id and ts - e[0] <= window_ms
    ]
    if len(others) > max_history:
        others.sort(key=lambda ce: ce[1][0], reverse=True)
        others = others[:max_history]
    pairs = []
    for c, e in others:
        # engagement_level(e, completion), weighted
        o = 3.0 if e[3] else 2.0 if e[1] >= completion else 1.0
        g = (new_w if new_w < o else o) - (old_w if old_w < o else o)
        if g > 0:
            pairs.append((c, g))
    return pairs


def cooc_updates(state: UserState, course_id: str, old_level: int, new_level: int, ts: int,
                 max_history: int = 20, window_ms: int = 90 * DAY_MS, completion: float = 0.9) -> list[RowUpdate]:
    """Row updates for a rise of the user's engagement with ``course_id`` (state already applied).

    The pair weight of two courses in one user's history is the smaller of the two engagement
    weights; the gains here sum, over any order of events, to exactly that (see the kernel test).
    Only the user's ``max_history`` most recent other courses within ``window_ms`` take part.
    A batch of events (the ingest agent) collects its rises in :class:`CoocRises` instead.
    """
    if new_level <= old_level:
        return []
    pop_delta = LEVEL_WEIGHTS[new_level] - LEVEL_WEIGHTS[old_level]
    pairs = tuple(_cooc_gains(state, course_id, old_level, new_level, ts, max_history, window_ms, completion))
    updates = [RowUpdate(course_id, ts, pop_delta, pairs)]
    updates.extend(RowUpdate(c, ts, 0.0, ((course_id, g),)) for c, g in pairs)
    return updates


class CoocRises:
    """The engagement rises of a batch of events, turned into row updates with one kernel call.

    :meth:`add` takes a snapshot of the user's other courses at the rise (call it right after the
    event was applied to the state); course ids are numbered per batch for the kernels.
    :meth:`merged_updates` (the ingest agent) returns the batch's updates merged per course row
    (:func:`models.kernels.cooc_gains_batch`); :meth:`updates` returns them per rise, in the order
    of the rises, exactly what :func:`cooc_updates` returns for each.
    """

    def __init__(self, max_history: int = 20, window_ms: int = 90 * DAY_MS, completion: float = 0.9) -> None:
        self.max_history = max_history
        self.window_ms = window_ms
        self.completion = completion
        self._ids: dict[str, int] = {}  # course id -> its number in this batch
        self._course: list[int] = []
        self._ts: list[int] = []
        self._old_w: list[float] = []
        self._new_w: list[float] = []
        self._offsets: list[int] = [0]
        self._others: list[int] = []
        self._other_w: list[float] = []

    def __len__(self) -> int:
        return len(self._course)

    def add(self, state: UserState, course_id: str, old_level: int, new_level: int, ts: int) -> None:
        """A rise of the user's engagement with ``course_id`` (no-op unless ``new_level > old_level``)."""
        if new_level <= old_level:
            return
        others = [
            (c, e) for c, e in state.courses.items()
            if c != course_id and ts - e[0] <= self.window_ms
        ]
        if len(others) > self.max_history:
            others.sort(key=lambda ce: ce[1][0], reverse=True)
            others = others[: self.max_history]
        ids = self._ids
        self._course.append(ids.setdefault(course_id, len(ids)))
        self._ts.append(ts)
        self._old_w.append(LEVEL_WEIGHTS[old_level])
        self._new_w.append(LEVEL_WEIGHTS[new_level])
        self._others.extend([ids.setdefault(c, len(ids)) for c, _ in others])
        self._other_w.extend([LEVEL_WEIGHTS[engagement_level(e, self.completion)] for _, e in others])
        self._offsets.append(len(self._other_w))

    def kernel_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(old_w, new_w, offsets, other_w)`` of :func:`models.kernels.pair_increments_batch`."""
        return (np.array(self._old_w, dtype=np.float64), np.array(self._new_w, dtype=np.float64),
                np.array(self._offsets, dtype=np.int64), np.array(self._other_w, dtype=np.float64))

    def gains_inputs(self) -> tuple[np.ndarray, ...]:
        """``(course, ts, old_w, new_w, offsets, others, other_w)`` of :func:`models.kernels.cooc_gains_batch`
        (course numbers index :attr:`names`)."""
        return (np.array(self._course, dtype=np.int64), np.array(self._ts, dtype=np.int64),
                np.array(self._old_w, dtype=np.float64), np.array(self._new_w, dtype=np.float64),
                np.array(self._offsets, dtype=np.int64), np.array(self._others, dtype=np.int64),
                np.array(self._other_w, dtype=np.float64))

    @property
    def names(self) -> list[str]:
        """The batch's course ids by number."""
        return list(self._ids)

    def merged_updates(self, half_life_ms: float) -> list[RowUpdate]:
        """The batch's row updates merged per course, with one kernel call: one :class:`RowUpdate`
        per touched course (risen, or another course that gained), in order of first appearance,
        at the course's latest ts in the batch with every gain re-based to it; pairs in order of
        first appearance. Equal, up to rounding, to :meth:`updates` merged course by course."""
        if not self._course:
            return []
        courses, ts, pop, indptr, other, gain = cooc_gains_batch(*self.gains_inputs(), half_life_ms, len(self._ids))
        names = self.names
        ptr = indptr.tolist()
        other_ids = [names[o] for o in other.tolist()]
        gains = gain.tolist()
        return [
            RowUpdate(names[c], t, p, tuple(zip(other_ids[ptr[s]:ptr[s + 1]], gains[ptr[s]:ptr[s + 1]], strict=True)))
            for s, (c, t, p) in enumerate(zip(courses.tolist(), ts.tolist(), pop.tolist(), strict=True))
        ]

    def updates(self) -> list[RowUpdate]:
        """Row updates of every rise so far, not merged: one per rise, and one per other course that gained."""
        if not self._course:
            return []
        gains = pair_increments_batch(*self.kernel_inputs()).tolist()
        names = self.names
        out: list[RowUpdate] = []
        offsets = self._offsets
        for r, (c, ts, old_w, new_w) in enumerate(zip(self._course, self._ts, self._old_w, self._new_w, strict=True)):
            course_id = names[c]
            lo, hi = offsets[r], offsets[r + 1]
            pairs = tuple((names[o], g) for o, g in zip(self._others[lo:hi], gains[lo:hi], strict=True) if g > 0)
            out.append(RowUpdate(course_id, ts, new_w - old_w, pairs))
            out.extend(RowUpdate(o, ts, 0.0, ((course_id, g),)) for o, g in pairs)
        return out


#: reference time of inflated weights (2020-01-01): fixed, so rows written by any worker agree
EPOCH_MS = 1_577_836_800_000
_MAX_EXPONENT = 1000.0


def inflation(ts: int, half_life_ms: float) -> float:
    """``2 ** ((ts - EPOCH) / half_life)``: the factor a weight added at ``ts`` is stored with.

    Weights added at different times then compare as if all decayed to a common time; dividing
    by ``inflation(now)`` gives their decayed value at ``now``.
    """
    exponent = (ts - EPOCH_MS) / half_life_ms
    if abs(exponent) > _MAX_EXPONENT:
        msg = f"event time {ts} is {exponent:.0f} half-lives from 2020-01-01; use a longer half-life"
        raise ValueError(msg)
    return 2.0 ** exponent


def new_row() -> dict[str, Any]:
    """An empty co-occurrence row: inflated popularity and co-occurrence with other courses."""
    return {"pop": 0.0, "row": {}, "ts": 0}


def apply_update(entry: dict[str, Any], update: RowUpdate, half_life_ms: float) -> dict[str, Any]:
    """Add a row update to a stored row (in place) and return it."""
    s = inflation(update.ts, half_life_ms)
    if update.pop_delta:
        entry["pop"] += update.pop_delta * s
    row = entry["row"]
    for other, gain in update.pairs:
        row[other] = row.get(other, 0.0) + gain * s
    if update.ts > entry["ts"]:
        entry["ts"] = update.ts
    return entry


def rows_csr(entries: Sequence[dict[str, Any]], pop_of: Callable[[str], float], at_ts: int,
             half_life_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Stored rows in the CSR form of :func:`models.kernels.row_similarities_batch`, decayed to ``at_ts``.

    Returns ``(indptr, cols, co, self_pop, pop, names)``: ``names[j]`` is column j's course and
    ``pop[j]`` its popularity; ``pop_of`` is called once per distinct course.
    """
    d = 1.0 / inflation(at_ts, half_life_ms)
    col_of: dict[str, int] = {}
    setdefault = col_of.setdefault
    cols: list[int] = []
    co: list[float] = []
    indptr = np.zeros(len(entries) + 1, dtype=np.int64)
    for r, entry in enumerate(entries):
        row = entry["row"]
        cols.extend([setdefault(o, len(col_of)) for o in row])
        co.extend(row.values())
        indptr[r + 1] = len(cols)
    names = list(col_of)
    pop = np.fromiter((pop_of(o) for o in names), dtype=np.float64, count=len(names))
    self_pop = np.fromiter((e["pop"] for e in entries), dtype=np.float64, count=len(entries)) * d
    return (indptr, np.array(cols, dtype=np.int64), np.array(co, dtype=np.float64) * d, self_pop, pop, names)


def rows_neighbours(entries: Sequence[dict[str, Any]], pop_of: Callable[[str], float], at_ts: int,
                    half_life_ms: float, *, k: int = 20, measure: str = "cosine",
                    total: float = 1.0) -> tuple[list[list[tuple[str, float]]], np.ndarray]:
    """Top-``k`` neighbours of many stored rows with one kernel call (a tick's changed rows).

    Returns the neighbour lists, as :func:`row_neighbours` gives them one at a time, and per row
    whether some co-occurring course has no popularity yet (``pop_of`` gave <= 0).
    """
    if not entries:
        return [], np.zeros(0, dtype=bool)
    indptr, cols, co, self_pop, pop, names = rows_csr(entries, pop_of, at_ts, half_life_ms)
    idx, sims, counts = row_similarities_batch(indptr, cols, co, self_pop, pop, total=total, measure=measure, k=k)
    unknown = np.zeros(len(entries), dtype=bool)
    bad = pop[cols] <= 0.0
    if bad.any():
        unknown[np.repeat(np.arange(len(entries)), np.diff(indptr))[bad]] = True
    lists = [
        [(names[j], round(v, 6)) for j, v in zip(idx_r[:m], sims_r[:m], strict=True)]
        for idx_r, sims_r, m in zip(idx.tolist(), sims.tolist(), counts.tolist(), strict=True)
    ]
    return lists, unknown


def row_neighbours(entry: dict[str, Any], pop_of: Callable[[str], float], at_ts: int, half_life_ms: float, *,
                   k: int = 20, measure: str = "cosine", total: float = 1.0) -> list[tuple[str, float]]:
    """Top-``k`` neighbours of a stored row; ``pop_of`` gives other courses' popularity at ``at_ts``."""
    row = entry["row"]
    if not row:
        return []
    d = 1.0 / inflation(at_ts, half_life_ms)
    others = list(row)
    co = np.fromiter((row[o] for o in others), dtype=np.float64, count=len(others)) * d
    other_pop = np.fromiter((pop_of(o) for o in others), dtype=np.float64, count=len(others))
    idx, sims = row_similarities(co, other_pop, entry["pop"] * d, total=total, measure=measure, k=k)
    return [(others[i], round(float(v), 6)) for i, v in zip(idx, sims, strict=True)]


class CooccurrenceRows:
    """Decayed co-occurrence rows of the courses this process owns (a dict of stored rows)."""

    def __init__(self, half_life_days: float = 30.0) -> None:
        if half_life_days < 1:
            msg = f"half_life_days must be >= 1, got {half_life_days}"
            raise ValueError(msg)
        self.half_life_days = half_life_days
        self._hl_ms = half_life_days * DAY_MS
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()

    @property
    def rows(self) -> dict[str, dict[str, float]]:
        return {c: e["row"] for c, e in self.entries.items()}

    @property
    def pop(self) -> dict[str, float]:
        return {c: e["pop"] for c, e in self.entries.items()}

    def apply(self, update: RowUpdate) -> None:
        """Add one row update (in event time)."""
        entry = self.entries.get(update.course_id)
        if entry is None:
            entry = self.entries[update.course_id] = new_row()
        apply_update(entry, update, self._hl_ms)
        self.dirty.add(update.course_id)

    def popularity(self, course_id: str, at_ts: int) -> float:
        entry = self.entries.get(course_id)
        return entry["pop"] / inflation(at_ts, self._hl_ms) if entry else 0.0

    def total_popularity(self, at_ts: int) -> float:
        return sum(e["pop"] for e in self.entries.values()) / inflation(at_ts, self._hl_ms)

    def neighbours(self, course_id: str, pop_of: Callable[[str], float], at_ts: int, *, k: int = 20,
                   measure: str = "cosine", total: float = 1.0) -> list[tuple[str, float]]:
        """Top-``k`` neighbours of an owned course; ``pop_of`` gives others' popularity at ``at_ts``."""
        entry = self.entries.get(course_id)
        if entry is None:
            return []
        return row_neighbours(entry, pop_of, at_ts, self._hl_ms, k=k, measure=measure, total=total)

    def neighbours_of_many(self, course_ids: Sequence[str], pop_of: Callable[[str], float], at_ts: int, *,
                           k: int = 20, measure: str = "cosine",
                           total: float = 1.0) -> list[list[tuple[str, float]]]:
        """:meth:`neighbours` of several courses with one kernel call (``pop_of`` once per course)."""
        empty: dict[str, Any] = new_row()
        entries = [self.entries.get(c, empty) for c in course_ids]
        return rows_neighbours(entries, pop_of, at_ts, self._hl_ms, k=k, measure=measure, total=total)[0]

    def take_dirty(self) -> list[str]:
        out = sorted(self.dirty)
        self.dirty.clear()
        return out


@dataclass
class _Meta:
    title: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    published_at: int = 0


class NeighbourIndex:
    """Every course's neighbours and popularity in dense arrays: the broadcast copy on a worker."""

    def __init__(self, k: int = 20, half_life_days: float = 30.0) -> None:
        if k < 1:
            msg = f"k must be >= 1, got {k}"
            raise ValueError(msg)
        self.k = k
        self.half_life_days = half_life_days
        self._hl_ms = half_life_days * DAY_MS
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.meta: list[_Meta] = []
        self.categories: dict[str, int] = {}
        self._cap = 64
        self.neigh_idx = np.full((self._cap, k), -1, dtype=np.int64)
        self.neigh_sim = np.zeros((self._cap, k), dtype=np.float64)
        self.pop = np.zeros(self._cap, dtype=np.float64)
        self.pop_ts = np.zeros(self._cap, dtype=np.int64)
        self.cat = np.full(self._cap, -1, dtype=np.int64)
        self.published = np.zeros(self._cap, dtype=np.int64)
        self.version = 0

    @property
    def size(self) -> int:
        return len(self.ids)

    def index(self, course_id: str) -> int:
        """The dense position of a course (added when new)."""
        i = self.pos.get(course_id)
        if i is not None:
            return i
        i = len(self.ids)
        if i == self._cap:
            self._grow()
        self.ids.append(course_id)
        self.pos[course_id] = i
        self.meta.append(_Meta(title=course_id))
        return i

    def _grow(self) -> None:
        cap = self._cap * 2
        def grow(a: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
            out[: self._cap] = a
            return out
        self.neigh_idx = grow(self.neigh_idx, -1)
        self.neigh_sim = grow(self.neigh_sim, 0.0)
        self.pop = grow(self.pop, 0.0)
        self.pop_ts = grow(self.pop_ts, 0)
        self.cat = grow(self.cat, -1)
        self.published = grow(self.published, 0)
        self._cap = cap

    def set_course(self, course_id: str, title: str, category: str, tags: Iterable[str], published_at: int) -> None:
        """Catalogue metadata of a course (from the ``courses`` topic)."""
        i = self.index(course_id)
        self.meta[i] = _Meta(title, category, tuple(tags), published_at)
        self.cat[i] = self.categories.setdefault(category, len(self.categories))
        self.published[i] = published_at

    def update(self, course_id: str, pop: float, ts: int, neighbours: Iterable[tuple[str, float]]) -> None:
        """A course's popularity (as of ``ts``) and its neighbour list, replacing the old one."""
        i = self.index(course_id)
        pairs = [(self.index(o), s) for o, s in neighbours][: self.k]
        m = len(pairs)
        self.neigh_idx[i, m:] = -1
        self.neigh_sim[i, m:] = 0.0
        if m:
            self.neigh_idx[i, :m] = [o for o, _ in pairs]
            self.neigh_sim[i, :m] = [s for _, s in pairs]
        self.pop[i] = pop
        self.pop_ts[i] = ts
        self.version += 1

    def popularity(self, at_ts: int) -> np.ndarray:
        """Every course's popularity decayed to ``at_ts``."""
        n = self.size
        return self.pop[:n] * np.exp2(-(at_ts - self.pop_ts[:n]) / self._hl_ms)

    def popularity_of(self, course_id: str, at_ts: int) -> float:
        i = self.pos.get(course_id)
        if i is None:
            return 0.0
        return float(self.pop[i] * 2.0 ** (-(at_ts - self.pop_ts[i]) / self._hl_ms))

    def neighbours_of(self, course_id: str) -> list[tuple[str, float]]:
        i = self.pos.get(course_id)
        if i is None:
            return []
        return [(self.ids[o], float(s)) for o, s in zip(self.neigh_idx[i], self.neigh_sim[i], strict=True) if o >= 0]


@dataclass(frozen=True)
class Ranker:
    """Hybrid ranking: neighbours of recent courses, popular in the user's categories, new courses.

    Every score part is normalised to about [0, 1] before weighting; the part that contributed
    most to an item gives its reason. Courses the user already touched, bought or completed are
    never recommended; at most ``per_category`` items of one category keep the list diverse.
    """

    n: int = 10
    max_history: int = 20
    user_half_life_days: float = 7.0
    per_category: int = 4
    new_days: float = 14.0
    w_similar: float = 1.0
    w_popular: float = 0.15
    w_new: float = 0.25
    w_trending: float = 0.02
    completion: float = 0.9
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 1 or self.per_category < 1:
            msg = f"n and per_category must be >= 1, got {self.n}, {self.per_category}"
            raise ValueError(msg)

    def recommend(self, state: UserState, index: NeighbourIndex, now: int) -> list[tuple[str, float, str]]:
        """Top-``n`` ``(course_id, score, reason)`` for a user as of event time ``now``."""
        return self.recommend_many([(state, now)], index)[0]

    def recommend_many(self, users: Sequence[tuple[UserState, int]],
                       index: NeighbourIndex) -> list[list[tuple[str, float, str]]]:
        """:meth:`recommend` of every ``(state, now)``, ranked in one kernel call (the lists are
        the same as one call per user gives)."""
        n_items = index.size
        if n_items == 0 or not users:
            return [[] for _ in users]
        pos = index.pos
        c_idx: list[int] = []
        c_ts: list[int] = []
        c_prog: list[float] = []
        c_bought: list[bool] = []
        s_idx: list[int] = []
        u_off, s_off, nows, pop_rows = [0], [0], [], []
        rows: dict[int, int] = {}
        for state, now in users:
            courses = state.courses
            known = [pos.get(c, -1) for c in courses]
            c_idx += known
            entries = courses.values()
            c_ts += [e[0] for e in entries]
            c_prog += [e[1] for e in entries]
            c_bought += [bool(e[3]) for e in entries]
            s_idx += [i for i in known if i >= 0]
            if state.owned:
                s_idx += [i for i in map(pos.get, state.owned) if i is not None]
            u_off.append(len(c_idx))
            s_off.append(len(s_idx))
            nows.append(now)
            pop_rows.append(rows.setdefault(now, len(rows)))
        parts = [self._popularity(index, n_items, now) for now in rows]
        out, n_out, r_items, r_levels, n_recent = rank_users(
            np.asarray(u_off), np.asarray(c_idx), np.asarray(c_ts), np.asarray(c_prog, dtype=np.float64),
            np.asarray(c_bought), np.asarray(s_off), np.asarray(s_idx, dtype=np.int64), np.asarray(nows),
            np.asarray(pop_rows), np.stack([p for p, _ in parts]), np.stack([t for _, t in parts]),
            index.neigh_idx, index.neigh_sim, n_items, index.cat, max(len(index.categories), 1), index.published,
            max_history=self.max_history, half_life_ms=self.user_half_life_days * DAY_MS,
            completion=self.completion, level_weights=np.asarray(LEVEL_WEIGHTS), new_ms=self.new_days * DAY_MS,
            w_similar=self.w_similar, w_popular=self.w_popular, w_new=self.w_new, k=self.n * 4, n=self.n,
            per_category=self.per_category)
        ids, reason = index.ids, self._reason_of
        lists: list[list[tuple[str, float, str]]] = []
        for u, got in enumerate(n_out.tolist()):
            m = int(n_recent[u])
            items, levels = r_items[u, :m].tolist(), r_levels[u, :m].tolist()
            # rows are (index, total, similar, popular, new, trending, reason source, best part)
            lists.append([(ids[int(row[0])], round(row[1], 6),
                           reason(index, int(row[0]), int(row[7]), int(row[6]), items, levels))
                          for row in out[u, :got].tolist()])
        return lists

    def _popularity(self, index: NeighbourIndex, n_items: int, now: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised popularity and the trending part at ``now``: the same for every user until
        the index changes, so kept on the index for its version, size and ``now``."""
        key = (index.version, n_items, now, self.w_trending)
        cached = getattr(index, "_ranker_popularity", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        pop = index.popularity(now)
        top = pop.max() if pop.size else 0.0
        pop_norm = pop / top if pop.size and top > 0 else np.zeros(n_items)
        trending = self.w_trending * pop_norm
        index._ranker_popularity = (key, pop_norm, trending)  # type: ignore[attr-defined]
        return pop_norm, trending

    @staticmethod
    def _reason(index: NeighbourIndex, i: int, similar: float, popular: float, new: float, trending: float,
                src: int, items: list[int], levels: list[int]) -> str:
        best = max((similar, 0), (new, 1), (popular, 2), (trending, 3))[1]
        return Ranker._reason_of(index, i, best, src, items, levels)

    @staticmethod
    def _reason_of(index: NeighbourIndex, i: int, best: int, src: int, items: list[int], levels: list[int]) -> str:
        """The reason of item ``i`` from the part that contributed most (0 similar, 1 new,
        2 popular, 3 trending) and the recent item behind the similar part (``src``)."""
        meta = index.meta[i]
        if best == 0 and src >= 0:
            source = index.meta[items[src]]
            verb = "bought" if levels[src] == 3 else "completed" if levels[src] == 2 else "watched"
            return f"because you {verb} {source.title}"
        if best == 1:
            return f"new in {meta.category or 'the catalogue'}"
        if best == 2:
            return f"popular in {meta.category}"
        return "trending now"


class OnlineRecommender:
    """All parts in one process (replay, evaluation): learn from user events, recommend."""

    name = "itemknn"
    version = "1"

    def __init__(self, k: int = 20, measure: str = "cosine", half_life_days: float = 30.0,
                 refresh_ms: int = 3_600_000, max_history: int = 20, ranker: Ranker | None = None,
                 mf_weight: float = 0.0, seed: int = 0) -> None:
        if measure not in MEASURES:
            msg = f"measure must be one of {sorted(MEASURES)}, got {measure!r}"
            raise ValueError(msg)
        if mf_weight < 0:
            msg = f"mf_weight must be >= 0, got {mf_weight}"
            raise ValueError(msg)
        #: weight of an online matrix-factorisation second scorer (River BiasedMF on engagement,
        #: two sampled negatives per positive) that re-ranks the hybrid list's top candidates;
        #: 0 (the default, and the live setting) leaves it out — see docs/results.md
        self.mf_weight = mf_weight
        self.seed = seed
        self._mf = None
        if mf_weight > 0:
            from river import optim, reco

            self._mf = reco.BiasedMF(n_factors=16, bias_optimizer=optim.SGD(0.01),
                                     latent_optimizer=optim.SGD(0.05), l2_latent=0.001, seed=seed)
            self._rng = random.Random(seed)
        self.k = k
        self.measure = measure
        self.half_life_days = half_life_days
        self.refresh_ms = refresh_ms
        self.max_history = max_history
        self.ranker = ranker or Ranker()
        self.rows = CooccurrenceRows(half_life_days)
        self.index = NeighbourIndex(k, half_life_days)
        self._last_refresh = 0

    def add_course(self, course_id: str, title: str, category: str, tags: Iterable[str], published_at: int) -> None:
        self.index.set_course(course_id, title, category, tags, published_at)

    def learn(self, state: UserState, course_id: str, old_level: int, new_level: int, ts: int) -> None:
        """Fold in a rise of a user's engagement with a course (``state`` already updated).

        Applies what :func:`cooc_updates` returns, row by row in the same order, without building
        the :class:`RowUpdate` objects: the course's own row (popularity and pairs), then one pair
        on each other course's row.
        """
        if new_level > old_level:
            pairs = _cooc_gains(state, course_id, old_level, new_level, ts, self.max_history,
                                90 * DAY_MS, self.ranker.completion)
            rows, index = self.rows, self.index
            entries, dirty = rows.entries, rows.dirty
            s = inflation(ts, rows._hl_ms)
            entry = entries.get(course_id)
            if entry is None:
                entry = entries[course_id] = new_row()
            pop_delta = LEVEL_WEIGHTS[new_level] - LEVEL_WEIGHTS[old_level]
            if pop_delta:
                entry["pop"] += pop_delta * s
            row = entry["row"]
            for other, gain in pairs:
                row[other] = row.get(other, 0.0) + gain * s
            if ts > entry["ts"]:
                entry["ts"] = ts
            dirty.add(course_id)
            index.index(course_id)
            for other, gain in pairs:
                entry = entries.get(other)
                if entry is None:
                    entry = entries[other] = new_row()
                row = entry["row"]
                row[course_id] = row.get(course_id, 0.0) + gain * s
                if ts > entry["ts"]:
                    entry["ts"] = ts
                dirty.add(other)
                index.index(other)
        if self._mf is not None and new_level > old_level:
            self._mf.learn_one(state.user_id, course_id, 1.0)
            for _ in range(2):
                negative = self.index.ids[self._rng.randrange(self.index.size)]
                if negative not in state.courses:
                    self._mf.learn_one(state.user_id, negative, 0.0)
        if ts - self._last_refresh >= self.refresh_ms:
            self.refresh(ts)

    def apply_updates(self, updates: Iterable[RowUpdate]) -> None:
        """Fold a step's merged row updates into the rows (as the course's owner does live); the
        neighbours follow at the next :meth:`refresh`."""
        for update in updates:
            self.rows.apply(update)
            self.index.index(update.course_id)

    def learn_rise(self, state: UserState, course_id: str) -> None:
        """A rise of a user's engagement with a course, for the optional second scorer (the rows
        learn from :meth:`apply_updates`)."""
        if self._mf is not None:
            self._mf.learn_one(state.user_id, course_id, 1.0)
            for _ in range(2):
                negative = self.index.ids[self._rng.randrange(self.index.size)]
                if negative not in state.courses:
                    self._mf.learn_one(state.user_id, negative, 0.0)

    def refresh(self, now: int) -> int:
        """Recompute the neighbours of every changed row; return how many."""
        self._last_refresh = now
        dirty = self.rows.take_dirty()
        if not dirty:
            return 0
        rows = self.rows
        total = rows.total_popularity(now) or 1.0
        entries = rows.entries
        s = inflation(now, rows._hl_ms)  # = rows.popularity(c, now), the inflation computed once

        def pop_of(c: str) -> float:
            entry = entries.get(c)
            return float(entry["pop"] / s) if entry else 0.0

        lists = rows.neighbours_of_many(dirty, pop_of, now, k=self.k, measure=self.measure, total=total)
        for c, neighbours in zip(dirty, lists, strict=True):
            self.index.update(c, pop_of(c), now, neighbours)
        return len(dirty)

    def recommend_many(self, users: Sequence[tuple[UserState, int]]) -> list[list[tuple[str, float, str]]]:
        """:meth:`recommend` of every ``(state, now)``: one ranking kernel call without the MF
        scorer; a subclass that overrides :meth:`recommend` is asked one user at a time."""
        if self._mf is None and type(self).recommend is OnlineRecommender.recommend:
            return self.ranker.recommend_many(users, self.index)
        return [self.recommend(state, now) for state, now in users]

    def recommend(self, state: UserState, now: int) -> list[tuple[str, float, str]]:
        if self._mf is None:
            return self.ranker.recommend(state, self.index, now)
        wide = dataclasses.replace(self.ranker, n=self.ranker.n * 4)
        scored = [(c, s + self.mf_weight * self._mf.predict_one(state.user_id, c), why)
                  for c, s, why in wide.recommend(state, self.index, now)]
        return sorted(scored, key=lambda t: -t[1])[: self.ranker.n]
