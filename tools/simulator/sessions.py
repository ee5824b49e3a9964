"""What a user does in a session: watching, rewatching, paywalls, purchases, shares and the invitees they bring."""

from __future__ import annotations

import logging
import math

from schemas.events import Purchase, Share, View
from tools.simulator.state import _ARRIVE, _SESSION, _Course, _Enrolment, _interests, _User
from tools.simulator.vocabulary import (
    _BREAK_P,
    _CAT_NAMES,
    _CH_CUM,
    _CH_NAMES,
    _CHANNELS,
    _OTHER_CONVERSION,
    _PLAN_DAYS,
    _PLAN_SHARE_P,
    _REFERRER_CONVERSION,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    PLAN_PRICES,
)

log = logging.getLogger(__name__)


class _Sessions:
    """Session behaviour of :class:`tools.simulator.run._Run` (a mixin: it uses the run's RNGs and state)."""


    def _purchase(self, ts: int, u: _User, *, course: _Course | None = None, plan: str | None = None,
                  amount: float | None = None, share_id: str | None = None) -> None:
        self.n_orders += 1
        if plan is not None:
            price = PLAN_PRICES[plan]
            u.plan = plan
            u.plan_until = max(u.plan_until, ts) + _PLAN_DAYS[plan] * DAY_MS
        else:
            assert course is not None
            price = course.price
        self._emit(ts, u, Purchase, {
            "amount": float(price) if amount is None else amount,
            "currency": self.currency,
            "order_id": f"o{self.seed}-{self.n_orders:08d}",
            "course_id": None if course is None else course.course_id,
            "plan": plan,
            "share_id": share_id,
        })

    def _maybe_share(self, u: _User, c: _Course, ts: int, p: float) -> int:
        """Share ``c`` with probability ``p`` (higher for natural referrers); returns the new time."""
        rng = self.rng
        if u.is_referrer:
            p = min(0.9, p * 6.0)
        if rng.random() >= p:
            return ts
        ts += (5_000 + int(rng.random() * (60_000 - 5_000)))
        if ts >= self.end:
            return ts
        self.n_shares += 1
        share_id = f"s{self.seed}-{self.n_shares:07d}"
        channel = rng.choices(_CH_NAMES, cum_weights=_CH_CUM)[0]
        _, most, conv = _CHANNELS[channel]
        self._emit(ts, u, Share, {"course_id": c.course_id, "channel": channel, "share_id": share_id})
        p_join = 0.2 if u.is_referrer else 0.08
        for _ in range(most):
            if rng.random() < p_join:
                if rng.random() < 0.7:
                    delay = int(rng.expovariate(1 / (6 * HOUR_MS)))
                else:
                    delay = int(rng.uniform(0.5 * DAY_MS, 5 * DAY_MS))
                arrive = ts + MINUTE_MS + min(delay, 5 * DAY_MS - MINUTE_MS)
                if arrive < self.end:
                    self._push(arrive, _ARRIVE, (share_id, c, u.is_referrer, conv))
        return ts

    def _arrive(self, ts: int, share_id: str, c: _Course, from_referrer: bool, conv: float) -> None:
        """An invitee signs up from a share, looks at the shared course, and may buy it."""
        rng = self.rng
        cfg = self.cfg
        weights = [rng.gammavariate(0.05, 1.0) for _ in _CAT_NAMES]
        weights[_CAT_NAMES.index(c.cat)] += rng.gammavariate(4.0, 1.0)
        other = rng.randrange(len(_CAT_NAMES))
        weights[other] += rng.gammavariate(1.0, 1.0) * (rng.random() < 0.5)
        total = sum(weights)
        u = _User(f"u{len(self.users) + 1:06d}", ts, _interests(w / total for w in weights),
                  round(min(25.0, max(0.15, rng.lognormvariate(math.log(1.8), 0.75))), 3),
                  round(rng.betavariate(2.0, 2.5), 3), round(rng.betavariate(2.0, 2.0), 3),
                  rng.random() < cfg.referrer_fraction, share_id)
        self.users.append(u)
        if rng.random() < cfg.churn_fraction:
            self._make_churner(u, ts)
        e = self._enrol(u, c)
        cur = ts + (10_000 + int(rng.random() * (120_000 - 10_000)))
        p = (_REFERRER_CONVERSION if from_referrer else _OTHER_CONVERSION) * conv
        if c.price > 0 and rng.random() < p:
            amount = round(c.price * 0.9, 2) if rng.random() < 0.5 else float(c.price)  # referral discount
            if cur < self.end:
                self._purchase(cur, u, course=c, amount=amount, share_id=share_id)
                e.owned = True
        last = self._session(u, cur, forced=(c, e))
        nxt = self._next_session(u, last)
        if nxt is not None:
            self._push(nxt, _SESSION, u)

    def _session(self, u: _User, t: int, forced: tuple[_Course, _Enrolment] | None = None) -> int:
        """Generate one session's events from ``t``; returns when the session ended."""
        rng = self.rng
        rand = rng.random
        end = self.end
        cur = t
        if u.plan is not None and u.plan_until <= t:
            if u.plan == "monthly" and rand() < 0.6:
                self._purchase(t, u, plan="monthly")
                cur += (5_000 + int(rng.random() * (30_000 - 5_000)))
            else:
                u.plan = None
        for _attempt in range(3):
            if forced is not None:
                c, e = forced
                new = False
                forced = None
            else:
                c, new = self._pick_course(u, cur)
                if c is None:
                    break
                e = self._enrol(u, c) if new else u.enrolments[c.course_id]
            cur += (2_000 + int(rng.random() * (30_000 - 2_000)))
            subscribed = u.plan is not None and u.plan_until > cur
            if new and c.price > 0 and not subscribed and rand() < 0.12 * (1.0 - u.price_sens):
                if cur < end:
                    self._purchase(cur, u, course=c, amount=self._amount(c.price))
                    e.owned = True
                    cur = self._maybe_share(u, c, cur, 0.03)
            viewed = 0
            n_views = 1
            while rand() < 0.55 and n_views < 8:
                n_views += 1
            lessons = c.lessons
            abandoned = False
            for _ in range(n_views):
                k = e.done
                if k >= lessons:
                    break
                if not e.owned and c.price > 0 and k >= c.free_lessons and not subscribed:
                    if self._paywall(u, c, e, cur):
                        cur += (20_000 + int(rng.random() * (120_000 - 20_000)))
                        subscribed = u.plan is not None and u.plan_until > cur
                        cur = self._maybe_share(u, c, cur, 0.04)
                    else:
                        abandoned = True
                        break
                length = c.lesson_secs[k]
                if rand() < 0.75:
                    frac = 1.0
                    watched = length * rng.uniform(0.9, 1.08)
                else:
                    frac = rng.uniform(0.05, 0.9)
                    watched = length * frac
                watched = round(min(watched, 7200.0), 1)
                cur += int(watched * 1000)
                if cur >= end:
                    return cur
                if frac == 1.0:
                    e.done = k + 1
                    progress = 1.0 if e.done >= lessons else min(0.9999, round(e.done / lessons, 4))
                else:
                    progress = min(0.9999, round((k + frac) / lessons, 4))
                if progress > e.progress:
                    e.progress = progress
                self._emit(cur, u, View, {"course_id": c.course_id, "lesson_id": c.lesson_ids[k],
                                          "watch_seconds": watched, "progress": e.progress})
                viewed += 1
                cur += (3_000 + int(rng.random() * (90_000 - 3_000)))
                if not e.shared_half and e.progress >= 0.5 and e.done < lessons:
                    e.shared_half = True
                    cur = self._maybe_share(u, c, cur, 0.03)
                if frac < 1.0 and rand() < 0.6:
                    break  # left mid-lesson
            if e.done >= lessons:
                if c.course_id in u.active:
                    u.active.remove(c.course_id)
                    cur = self._maybe_share(u, c, cur, 0.15)
            elif abandoned or rand() < (0.02 + 0.2 * (1.0 - u.completion) ** 2) * (0.5 if e.owned else 1.0):
                if c.course_id in u.active:
                    u.active.remove(c.course_id)
            elif viewed:
                cur = self._maybe_share(u, c, cur, 0.005)  # liked a lesson enough to pass it on
            if viewed:
                break
        if u.drift_forced and u.drift_start is not None and (u.last_ts is None or u.last_ts < u.drift_start):
            cur = self._rewatch(u, cur)  # a drifting user's first session after the drift shows up
        if rand() < _BREAK_P and not u.drift_forced:
            u.break_until = cur + int(rng.uniform(2 * DAY_MS, 7 * DAY_MS))
            if u.drift_start is not None:  # a churner's decline is not postponed by a break
                u.break_until = min(u.break_until, u.drift_start)
        return cur

    def _rewatch(self, u: _User, ts: int) -> int:
        """Re-watch a little of an open lesson of the most recently enrolled course possible."""
        for cid in reversed(list(u.enrolments)):
            e = u.enrolments[cid]
            c = self.by_id[cid]
            is_open = e.owned or c.price == 0 or (u.plan is not None and u.plan_until > ts)
            k = min(e.done, c.lessons - 1) if is_open else min(e.done, c.free_lessons - 1)
            if k < 0:
                continue
            watched = round(min(c.lesson_secs[k], 30.0 + 240.0 * self.rng.random()), 1)
            ts += int(watched * 1000)
            if ts < self.end:
                self._emit(ts, u, View, {"course_id": cid, "lesson_id": c.lesson_ids[k],
                                         "watch_seconds": watched, "progress": e.progress})
            return ts
        return ts

    def _paywall(self, u: _User, c: _Course, e: _Enrolment, ts: int) -> bool:
        """The user reached a paid lesson: buy the course, subscribe, or give up."""
        rng = self.rng
        if ts >= self.end:
            return False
        if u.spw >= 3.0 and rng.random() < _PLAN_SHARE_P:
            self._purchase(ts, u, plan="annual" if rng.random() < 0.3 else "monthly")
            return True
        p = 0.55 * (1.0 - 0.7 * u.price_sens * min(1.0, c.price / 499.0)) * (0.6 + 0.8 * u.completion)
        p *= 0.7 + 0.6 * u.interests.get(c.cat, 0.0)
        if rng.random() < p:
            self._purchase(ts, u, course=c, amount=self._amount(c.price))
            e.owned = True
            return True
        return False
