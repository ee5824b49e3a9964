"""One pass of the simulation (:class:`_Run`): users, sessions scheduled on a heap, events in time order."""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import numpy as np

from models.datasets.truth import CourseTruth, SimTruth, UserTruth
from tools.simulator.sessions import _Sessions
from tools.simulator.state import (
    _ARRIVE,
    _EMIT,
    _PUBLISH,
    _SESSION,
    _Course,
    _Enrolment,
    _interests,
    _User,
)
from tools.simulator.vocabulary import (
    _CAT_NAMES,
    _CAT_SHARE,
    _CONTINUE_P,
    _DISCOUNTS,
    _LOCAL_OFFSET_MS,
    _MAX_ACTIVE,
    _PRESENT_AT_START,
    _RECENT_COURSE_P,
    _RHYTHM,
    _RHYTHM_PEAK,
    _WEEK_FACTOR_CAP,
    DAY_MS,
    HOUR_MS,
    WEEK_MS,
    _Record,
)

if TYPE_CHECKING:
    from tools.simulator.platform import PlatformSimulator

log = logging.getLogger(__name__)


class _Run(_Sessions):
    """One pass of the simulation: its own RNGs and state, so every ``events()`` call is identical."""

    def __init__(self, sim: PlatformSimulator) -> None:
        cfg = sim.config
        self.sim = sim
        self.cfg = cfg
        self.seed = cfg.seed
        self.start = sim.start_ms
        self.end = sim.end_ms
        self.currency = cfg.currency
        self.rng = random.Random(f"coursepulse-sim:{cfg.seed}:run")
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.n_events = 0
        self.n_orders = 0
        self.n_shares = 0
        self.users: list[_User] = []
        self.courses = sim._courses
        self.by_id = {c.course_id: c for c in self.courses}
        self.recent: list[_Course] = []  # courses published during the period so far
        self.counts: dict[str, int] = {"view": 0, "purchase": 0, "share": 0, "course": 0}
        self.exhausted = False
        # discovery pools: category -> (courses, cumulative popularity)
        self.pools: dict[str | None, tuple[list[_Course], list[float]]] = {}
        for cat in [*_CAT_NAMES, None]:
            members = [c for c in self.courses if cat is None or c.cat == cat]
            self.pools[cat] = (members, list(accumulate(c.popularity for c in members)))
        decay_scale = min(1.0, cfg.days / 42.0)
        self.decay_lo = 7 * DAY_MS * decay_scale
        self.decay_hi = 21 * DAY_MS * decay_scale
        self.tail = min(3 * DAY_MS, 0.1 * cfg.days_ms)  # churners stop at least this long before the end
        self._init_users()

    # -- setup -----------------------------------------------------------------------------

    def _init_users(self) -> None:
        cfg = self.cfg
        n = cfg.users
        nrng = np.random.default_rng([cfg.seed, 11])
        present = nrng.random(n) < _PRESENT_AT_START
        tenure = nrng.exponential(150 * DAY_MS, n)
        signup = self.start + nrng.random(n) * (self.end - self.start)
        # interests: Dirichlet concentrated on 1-3 categories (row-normalised gammas)
        k = nrng.choice([1, 2, 3], size=n, p=[0.35, 0.45, 0.2])
        alpha = np.full((n, len(_CAT_NAMES)), 0.05)
        cat_p = np.array(_CAT_SHARE) / sum(_CAT_SHARE)
        for i in range(n):
            chosen = nrng.choice(len(_CAT_NAMES), size=k[i], replace=False, p=cat_p)
            alpha[i, chosen] = 2.0
        g = nrng.gamma(alpha)
        g = g / g.sum(axis=1, keepdims=True)
        spw = np.clip(nrng.lognormal(math.log(2.2), 0.75, n), 0.15, 25.0)
        completion = nrng.beta(2.0, 2.5, n)
        price_sens = nrng.beta(2.0, 2.0, n)
        referrers = np.zeros(n, dtype=bool)
        referrers[nrng.permutation(n)[: int(round(cfg.referrer_fraction * n))]] = True

        firsts: list[int] = []
        for i in range(n):
            if present[i]:
                joined = max(0, int(self.start - tenure[i]))
            else:
                joined = int(signup[i])
            u = _User(f"u{i + 1:06d}", joined, _interests(g[i]), round(float(spw[i]), 3),
                      round(float(completion[i]), 3), round(float(price_sens[i]), 3),
                      bool(referrers[i]), None)
            self.users.append(u)
            first = self._next_session(u, self.start) if present[i] else joined
            firsts.append(-1 if first is None else first)

        # churners: an exact share of the users, among those with room to drift and stop
        target = int(round(cfg.churn_fraction * n))
        eligible = [i for i in range(n) if 0 <= firsts[i] <= self.end - self.decay_lo - self.tail]
        order = nrng.permutation(len(eligible))
        for j in order[:target]:
            i = eligible[j]
            self._make_churner(self.users[i], firsts[i])
        if len(eligible) < target:
            log.info("only %d of %d users can churn within %.1f days", len(eligible), target, cfg.days)
        for i, u in enumerate(self.users):
            if firsts[i] >= 0 and firsts[i] < self.end:
                self._push(firsts[i], _SESSION, u)
        for c in self.courses:
            if c.published_at >= self.start:
                self._push(c.published_at, _PUBLISH, c)

    def _make_churner(self, u: _User, first: int) -> bool:
        rng = self.rng
        decay = int(rng.uniform(self.decay_lo, self.decay_hi))
        latest = self.end - self.tail - decay
        if latest < first:
            decay = int(self.end - self.tail - first)
            if decay < self.decay_lo:
                return False
            latest = first
        u.drift_start = int(rng.uniform(first, latest))
        u.stop_at = u.drift_start + decay
        return True

    # -- the heap --------------------------------------------------------------------------

    def _push(self, ts: int, code: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (ts, self.seq, code, payload))

    def _emit(self, ts: int, u: _User, cls: type, fields: dict[str, Any]) -> None:
        """Schedule a user event; it gets its event_id when it leaves the heap (in time order)."""
        self.seq += 1
        heapq.heappush(self.heap, (ts, self.seq, _EMIT, (cls, u, fields)))
        u.n_events += 1
        if u.last_ts is None or ts > u.last_ts:
            u.last_ts = ts

    def generate(self) -> Iterator[_Record]:
        sim = self.sim
        for c in self.courses:
            if c.published_at < self.start:
                self.counts["course"] += 1
                yield c.record
        heap = self.heap
        pop = heapq.heappop
        seed = self.seed
        counts = self.counts
        started = time.perf_counter()
        while heap:
            ts, _, code, payload = pop(heap)
            if code == _EMIT:
                cls, u, fields = payload
                self.n_events += 1
                counts[cls.kind] += 1
                yield cls(event_id=f"e{seed}-{self.n_events:09d}", user_id=u.user_id, ts=ts,
                          schema_version=1, **fields)
            elif code == _SESSION:
                u = payload
                last = self._session(u, ts)
                nxt = self._next_session(u, last)
                if nxt is not None:
                    self._push(nxt, _SESSION, u)
            elif code == _ARRIVE:
                self._arrive(ts, *payload)
            else:
                self.recent.append(payload)
                counts["course"] += 1
                yield payload.record
        self.exhausted = True
        elapsed = time.perf_counter() - started
        log.info("simulated %d users (%d invited), %s in %.2f s (seed %d)",
                 len(self.users), len(self.users) - self.cfg.users, counts, elapsed, sim.config.seed)

    # -- timing ----------------------------------------------------------------------------

    def _next_session(self, u: _User, after: int) -> int | None:
        """Next session start after ``after``: a thinned Poisson process (rhythm, weeks, drift).

        Candidates come at the user's rate times this week's factor times the peak of the weekly
        rhythm; each is kept with probability rhythm(hour of week) / peak, times the decline of a
        drifting user. A candidate past the end of the week restarts at the week boundary
        (memoryless), where the next week's factor is drawn.
        """
        rng = self.rng
        rand = rng.random
        log_ = math.log
        t0 = max(after, u.break_until)
        t = t0
        end, start = self.end, self.start
        stop, drift = u.stop_at, u.drift_start
        for _ in range(1_000_000):
            week = (t - start) // WEEK_MS
            if week != u.week:
                u.week = week
                u.week_factor = min(_WEEK_FACTOR_CAP, rng.gammavariate(3.0, 1 / 3))
            lam = u.rate * u.week_factor * _RHYTHM_PEAK
            boundary = start + (week + 1) * WEEK_MS
            t += int(-log_(1.0 - rand()) / lam) + 1
            jumped = t >= boundary
            if jumped:
                t = boundary
            if drift is not None and not u.drift_forced and t >= drift:
                u.drift_forced = True  # the decline starts with a session
                t = max(drift, t0 + 1)
                return t if t < end and (stop is None or t < stop) else None
            if t >= end or (stop is not None and t >= stop):
                return None
            if jumped:
                continue
            accept = _RHYTHM[((t + _LOCAL_OFFSET_MS) // HOUR_MS) % 168]
            if drift is not None and t >= drift and stop is not None:
                accept *= ((stop - t) / (stop - drift)) ** 1.5
            if rand() < accept:
                return t
        return None  # pragma: no cover - only for absurdly low acceptance

    # -- behaviour -------------------------------------------------------------------------

    def _pick_new(self, u: _User, t: int) -> _Course | None:
        rng = self.rng
        enrolled = u.enrolments
        if self.recent and rng.random() < _RECENT_COURSE_P:
            fresh = [c for c in self.recent[-20:] if c.published_at >= t - 21 * DAY_MS
                     and u.interests.get(c.cat, 0.0) >= 0.15 and c.course_id not in enrolled]
            if fresh:
                return rng.choice(fresh)
        for attempt in range(8):
            cat = rng.choices(u.cats, cum_weights=u.cum)[0] if attempt < 5 else None
            members, cum = self.pools[cat]
            if not members:
                continue
            c = rng.choices(members, cum_weights=cum)[0]
            if c.published_at <= t and c.course_id not in enrolled:
                return c
        return None

    def _pick_course(self, u: _User, t: int) -> tuple[_Course | None, bool]:
        """The course of this session, and whether it is newly discovered."""
        rng = self.rng
        if u.active and rng.random() < _CONTINUE_P:
            if len(u.active) == 1 or rng.random() < 0.6:
                cid = u.active[-1]
            else:
                cid = rng.choice(u.active)
                u.active.remove(cid)
                u.active.append(cid)
            return self.by_id[cid], False
        c = self._pick_new(u, t)
        if c is None and u.active:
            return self.by_id[u.active[-1]], False
        return c, c is not None

    def _enrol(self, u: _User, c: _Course) -> _Enrolment:
        e = _Enrolment()
        u.enrolments[c.course_id] = e
        u.active.append(c.course_id)
        if len(u.active) > _MAX_ACTIVE:
            u.active.pop(0)
        return e

    def _amount(self, price: float) -> float:
        if self.rng.random() < 0.25:
            return round(price * self.rng.choice(_DISCOUNTS), 2)
        return float(price)

    # -- ground truth ----------------------------------------------------------------------

    def truth(self) -> SimTruth:
        users: dict[str, UserTruth] = {}
        for u in self.users:
            churned = u.last_ts if (u.drift_start is not None and u.last_ts is not None) else None
            drift = u.drift_start
            if churned is not None and drift is not None and churned < drift:
                drift = churned  # rare: went silent before the planned decline could show
            users[u.user_id] = UserTruth(
                user_id=u.user_id, joined_at=u.joined_at, interests=dict(u.interests),
                churned_at=churned, drift_start=drift, is_referrer=u.is_referrer,
                invited_by_share=u.invited_by, sessions_per_week=u.spw,
                completion_propensity=u.completion, price_sensitivity=u.price_sens, events=u.n_events,
            )
        courses = {c.course_id: CourseTruth(c.course_id, c.cat, round(c.popularity, 4), c.lessons,
                                            c.free_lessons, c.published_at) for c in self.courses}
        return SimTruth(users=users, courses=courses, start_ms=self.start, end_ms=self.end,
                        complete=self.exhausted)
