"""Prequential (test-then-learn) replay of an event file through the live models, without Kafka.

Every event is first used to *test* (was the course a user discovers in their last published
top-10? how risky did the churn model think a user was?) and only then to *learn*. Labels are
delayed: the churn model learns only from outcomes whose time has passed (its own
``DelayedLabels``), and ground-truth labels reach the evaluator through :class:`LabelFeed`,
which refuses to reveal a label before its time. Metrics that need the future (did this user
churn within H days of this snapshot?) are computed after the replay ends, from snapshots
recorded before it.

Events are folded by the worker's own step (:func:`models.step.step`), in batches cut as the
worker's are (at most ``batch_events`` events within ``batch_window_ms`` of event time: the
worker's ``COURSEPULSE_INGEST_BATCH`` and ``COURSEPULSE_INGEST_BATCH_WITHIN_S`` with traffic
arriving in real time), one step per partition of the batch, with one set of models per
partition. By default a user's list is ranked after every batch that touched them, at the
user's latest event, before the batch's own co-occurrence gains reach the neighbour lists; the
neighbour lists are recomputed at the start of a batch once ``neighbours_refresh_ms`` of event
time has passed (the worker's ``COURSEPULSE_NEIGHBOURS_REFRESH_S``). Where eval departs from
the worker it is a named option: ``rec_interval_ms`` (lists at most once per user per this much
event time), ``learn_from_labels``, ``as_of``.

The same file and seed give the same numbers on every run: nothing here reads the wall clock
except the throughput figures.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.evaluation.baselines import alert_lift, recency_baseline
from models.evaluation.metrics import average_precision, ndcg_at, roc_auc
from models.profile import DAY_MS, PartitionStats, UserState
from models.recommend import OnlineRecommender
from models.referrals import ReferralModels
from models.retention import RetentionModels
from models.step import PartitionModels, RecTrigger, StepConfig, list_due, step
from schemas.events import Course, Purchase, View

__all__ = ["EvalConfig", "LabelFeed", "PrequentialEvaluator", "popularity_top"]

#: the event types that name a course
_COURSE_EVENTS = (View, Purchase)

log = logging.getLogger(__name__)


class LabelFeed:
    """Ground-truth churn times, revealed only once the replay clock has passed them.

    >>> feed = LabelFeed({"u1": 1_000})
    >>> feed.advance(999); feed.churned_at("u1") is None
    True
    >>> feed.advance(1_000); feed.churned_at("u1")
    1000
    """

    def __init__(self, labels: dict[str, int | None]) -> None:
        self._labels = dict(labels)
        self.clock = -(2**62)

    def advance(self, clock: int) -> None:
        """Move the clock forward (never back)."""
        self.clock = max(self.clock, clock)

    def churned_at(self, user_id: str) -> int | None:
        """The user's churn time if it is in the past, else None (unknown yet, or never)."""
        t = self._labels.get(user_id)
        return t if t is not None and t <= self.clock else None

    def _final(self) -> dict[str, int | None]:
        """Every label; only for metrics computed after the replay has ended."""
        return self._labels


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of an evaluation run."""

    k: int = 10
    horizon_days: float = 14.0
    as_of: int | None = None
    #: 0 (the worker): a user's list is ranked after every batch that touched them; > 0: at most
    #: once per user per this much event time (an eval-only coalescing, cheaper on long files)
    rec_interval_ms: int = 0
    #: a batch: at most this many events within ``batch_window_ms`` of event time (the worker's
    #: COURSEPULSE_INGEST_BATCH and COURSEPULSE_INGEST_BATCH_WITHIN_S)
    batch_events: int = 500
    batch_window_ms: int = 20
    #: changed co-occurrence rows become neighbour lists this often (COURSEPULSE_NEIGHBOURS_REFRESH_S)
    neighbours_refresh_ms: int = 1_000
    #: input partitions (COURSEPULSE_PARTITIONS): one set of models per partition, as the workers
    #: keep them; users are spread by the ``partition_of`` given to the evaluator
    partitions: int = 1
    #: what the step folds with (the worker's de-duplication window, completion, lateness)
    step: StepConfig = StepConfig()
    #: the popularity baseline's order is refreshed at most this often (event time)
    baseline_refresh_ms: int = 3_600_000
    #: a risk snapshot is recorded at most once per user per this much event time
    snapshot_interval_ms: int = DAY_MS
    alert_threshold: float = 0.5
    #: the "after warm-up" churn figures leave out snapshots of the first days of the file, when
    #: delayed labels have not reached the model yet
    warmup_days: float = 28.0
    #: the as-of AUC scores the users active in this many days before the cut-off
    as_of_active_days: float = 30.0
    #: with a label file, learn churn from it (labels reach the model only once in the past)
    learn_from_labels: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.horizon_days <= 0:
            msg = f"k must be >= 1 and horizon_days > 0, got {self.k}, {self.horizon_days}"
            raise ValueError(msg)
        if self.batch_events < 1 or self.batch_window_ms < 0 or self.partitions < 1:
            msg = (f"batch_events and partitions must be >= 1 and batch_window_ms >= 0, got {self.batch_events}, "
                   f"{self.partitions}, {self.batch_window_ms}")
            raise ValueError(msg)


def popularity_top(order: list[str], exclude: set[str] | dict[str, Any], k: int) -> list[str]:
    """The first ``k`` of a popularity order that are not excluded."""
    out = []
    for c in order:
        if c not in exclude:
            out.append(c)
            if len(out) == k:
                break
    return out


@dataclass
class _Lists:
    ours: list[str]
    baseline: list[str]


@dataclass
class _Results:
    hits: list[tuple[int, int | None, int | None]] = field(default_factory=list)  # (ts, our rank, base rank)
    per_user: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    recommended: set[str] = field(default_factory=set)
    snapshots: list[tuple[str, int, float]] = field(default_factory=list)  # (user, t, risk)
    snapshot_recency: list[float] = field(default_factory=list)  # days since the last event, per snapshot
    alerts: list[tuple[str, int, float]] = field(default_factory=list)
    as_of: list[tuple[str, float]] = field(default_factory=list)
    throughput: list[tuple[float, int]] = field(default_factory=list)


class PrequentialEvaluator:
    """Replay events through the recommender and the churn model, test-then-learn."""

    def __init__(self, config: EvalConfig | None = None, recommender: OnlineRecommender | None = None,
                 retention: RetentionModels | None = None, labels: dict[str, int | None] | None = None,
                 scorer: Callable[[str, UserState, int], float] | None = None,
                 partition_of: Callable[[str], int] | None = None,
                 models_factory: Callable[[int], PartitionModels] | None = None) -> None:
        """``partition_of``: a user's partition (default: all on partition 0; ``coursepulse eval``
        passes Kafka's partitioner over ``config.partitions``). ``models_factory``: a partition's
        fresh models (``coursepulse eval`` builds the worker's from the settings); ``retention``:
        partition 0's retention models."""
        self.config = config or EvalConfig()
        self.recommender = recommender or OnlineRecommender()
        self.labels = LabelFeed(labels or {})
        self.has_labels = labels is not None
        #: with ground truth, the churn model learns it (once in the past) instead of inactivity
        self.learn_from_labels = self.has_labels and self.config.learn_from_labels
        self.partition_of = partition_of or (lambda _user: 0)
        self._models_factory = models_factory or self._default_models
        self._first_retention = retention
        #: partition -> its models (stats, retention, referrals), as a worker keeps them
        self.models: dict[int, PartitionModels] = {}
        #: what produces a risk snapshot; the churn model unless a test swaps in another scorer
        self.scorer = scorer
        #: (known at, label, user, snapshot time, features): learned once the clock reaches "known at"
        self._pending_labels: list[tuple[int, int, str, int, tuple[float, ...]]] = []
        self.states: dict[str, UserState] = {}
        self.catalogue: set[str] = set()
        self._lists: dict[str, _Lists] = {}
        #: user_id -> (trigger, items) of the last list ranked for the user (what the worker published)
        self.last_lists: dict[str, tuple[RecTrigger, list[tuple[str, float, str]]]] = {}
        #: lists ranked with items, and of them those published (the others were unchanged)
        self.lists_ranked = 0
        self.lists_published = 0
        self._last_pub: dict[str, int] = {}
        self._last_snap: dict[str, int] = {}
        self._last_refresh = -(2**62)
        self._engaged: Counter[str] = Counter()
        self._pop_order: list[str] = []
        self._pop_at = -(2**62)
        self._activity_days: dict[str, list[int]] = defaultdict(list)
        self.clock = 0
        self._first_ts: int = 0
        self.events = 0
        self.batches = 0
        self.r = _Results()
        self._as_of_done = self.config.as_of is None

    def _default_models(self, partition: int) -> PartitionModels:
        retention = self._first_retention if partition == 0 and self._first_retention is not None else None
        retention = retention or RetentionModels(
            horizon_days=self.config.horizon_days, threshold=self.config.alert_threshold, seed=self.config.seed,
            self_supervised=not self.learn_from_labels)
        return PartitionModels(partition, PartitionStats(), retention, ReferralModels())

    def partition_models(self, partition: int) -> PartitionModels:
        """The partition's models, created on first use."""
        pm = self.models.get(partition)
        if pm is None:
            pm = self.models[partition] = self._models_factory(partition)
        return pm

    def churn_of(self, user: str) -> Any:
        """The churn model of the user's partition."""
        return self.partition_models(self.partition_of(user)).retention.churn

    @property
    def churn(self) -> Any:
        """Partition 0's churn model (the only one unless ``partitions`` > 1)."""
        return self.partition_models(0).retention.churn

    @property
    def retention(self) -> RetentionModels:
        """Partition 0's retention models."""
        return self.partition_models(0).retention

    # -- the replay ------------------------------------------------------------------------

    def run(self, events: Iterable[Any]) -> dict[str, Any]:
        """Replay every event; return the report dict (see README, "Evaluation")."""
        started = time.perf_counter()
        self.feed(events, started)
        elapsed = time.perf_counter() - started
        self.r.throughput.append((elapsed, self.events))
        return self.report(elapsed)

    def feed(self, events: Iterable[Any], started: float | None = None) -> None:
        """Replay events in the worker's batches (``batch_events`` events, or ``batch_window_ms``
        of event time): test, then learn with the step. ``started``: the ``perf_counter`` the
        throughput marks count from."""
        started = time.perf_counter() if started is None else started
        cfg = self.config
        batch: list[Any] = []
        next_mark = (self.events // 50_000 + 1) * 50_000
        for ev in events:
            if isinstance(ev, Course):
                if batch:
                    self.step(batch)
                    batch = []
                self.add_course(ev)
                continue
            if batch and (len(batch) >= cfg.batch_events or abs(ev.ts - batch[0].ts) >= cfg.batch_window_ms
                          or self._crosses_as_of(batch[0].ts, ev.ts)):
                self.step(batch)
                batch = []
                if self.events >= next_mark:
                    next_mark += 50_000
                    self.r.throughput.append((time.perf_counter() - started, self.events))
            batch.append(ev)
        if batch:
            self.step(batch)

    def _crosses_as_of(self, first: int, t: int) -> bool:
        as_of = self.config.as_of
        return as_of is not None and not self._as_of_done and first <= as_of < t

    def add_course(self, ev: Course) -> None:
        """A catalogue entry (the ``courses`` topic every worker reads)."""
        self.recommender.add_course(ev.course_id, ev.title, ev.category, ev.tags, ev.published_at)
        self.catalogue.add(ev.course_id)

    def step(self, batch: list[Any]) -> None:
        """Test on a batch of user events (against the lists published before it), then learn
        from it with the worker's step, partition by partition, and rank the owed lists."""
        cfg = self.config
        first = batch[0].ts
        if not self._first_ts:
            self._first_ts = first
        if first > self.clock:
            self._advance(first)
        if first - self._last_refresh >= cfg.neighbours_refresh_ms:  # the neighbour lists' timer
            self._last_refresh = first
            self.recommender.refresh(first)
        self.events += len(batch)
        self.batches += 1

        # -- test: a discovery is the first touch of a course the user never touched
        touched: set[tuple[str, str]] = set()
        by_partition: dict[int, list[Any]] = {}
        for ev in batch:
            user = ev.user_id
            state = self.states.get(user)
            course = ev.course_id if isinstance(ev, _COURSE_EVENTS) else None
            if course is not None and (user, course) not in touched:
                touched.add((user, course))
                if state is None or (course not in state.courses and course not in state.owned):
                    self._test(user, course, ev.ts)
                if state is None or course not in state.courses:
                    self._engaged[course] += 1
            days = self._activity_days[user]
            day = ev.ts // DAY_MS
            i = bisect.bisect_left(days, day)
            if i == len(days) or days[i] != day:
                days.insert(i, day)
            by_partition.setdefault(self.partition_of(user), []).append(ev)

        # -- learn: the worker's step, one per partition; the batch's rises merged in one call
        rises = None
        results = []
        for partition, events in by_partition.items():
            result = step(events, self.states, self.partition_models(partition), cfg.step,
                          get_state=self.states.get, rises=rises)
            rises = result.rises
            results.append(result)
        for result in results:
            for o in result.users:
                self.states[o.user_id] = o.state
            for user, course in result.rose:
                self.recommender.learn_rise(self.states[user], course)
            for a in result.alerts:
                self.r.alerts.append((a.user_id, a.at, a.risk))
            # the silence check scored these users with the churn model, from these features, and
            # the model has not learned since: the same snapshot as computing both again
            for (user, at, risk), x in zip(result.scored, result.scored_features, strict=True):
                self._snapshot(user, self.states[user], at, x, risk)
        last = max(ev.ts for ev in batch)
        owed: list[tuple[UserState, RecTrigger, bool]] = []
        for result in results:
            for o in result.users:
                t = o.trigger.ts
                if o.applied and t - self._last_snap.get(o.user_id, -(2**62)) >= cfg.snapshot_interval_ms:
                    self._last_snap[o.user_id] = t
                    self._snapshot(o.user_id, o.state, t)
                # -- publish the user's list as the worker does: ranked in the batch, at the user's
                # latest event, with the neighbour lists as they were before this batch's gains
                if not cfg.rec_interval_ms or t - self._last_pub.get(o.user_id, -(2**62)) >= cfg.rec_interval_ms:
                    self._last_pub[o.user_id] = t
                    owed.append((o.state, o.trigger, o.repeated))
        self._publish_many(owed)
        if rises is not None:
            self.recommender.apply_updates(rises.merged_updates(self.recommender.rows._hl_ms))
        if last > self.clock:
            self._advance(last)

    def reassign_partitions(self) -> int:
        """What a worker does when its ``course-cooc`` partitions are assigned (a start, a restart,
        a rebalance): every row's neighbours recomputed, from the popularity of its courses now.
        Return how many rows."""
        rows = self.recommender.rows
        rows.dirty.update(rows.entries)
        return self.recommender.refresh(self.clock)

    def _test(self, user: str, course: str, t: int) -> None:
        lists = self._lists.get(user)
        if lists is None:
            return
        ours = lists.ours.index(course) if course in lists.ours else None
        base = lists.baseline.index(course) if course in lists.baseline else None
        self.r.hits.append((t, ours, base))
        counts = self.r.per_user[user]
        counts[0] += 1
        counts[1] += ours is not None
        counts[2] += base is not None

    def _publish_many(self, owed: list[tuple[UserState, RecTrigger, bool]]) -> None:
        """Rank the lists owed by a batch (in one ranking call, worded by the repurchase model, as
        the worker does), publish those the worker would (:func:`models.step.list_due`: changed,
        aged, or a repeat's), and refresh the popularity baseline's list beside each one ranked."""
        if not owed:
            return
        k = self.config.k
        ranked = self.recommender.recommend_many([(state, trigger.ts) for state, trigger, _ in owed])
        for (state, trigger, repeated), items in zip(owed, ranked, strict=True):
            if items:
                items = self.partition_models(trigger.partition).retention.word_repurchase(items, state, trigger.ts)
            if list_due(state, trigger, items, self.config.step, force=repeated):
                self.last_lists[state.user_id] = (trigger, items)
                self.lists_published += 1
            if not items:  # the worker publishes nothing (and keeps the user's previous list)
                continue
            self.lists_ranked += 1
            # published or not, the user's list now has these courses in this order (a list is
            # left unpublished only when it is the same as the last one published)
            ours = [c for c, _, _ in items][:k]
            self.r.recommended.update(ours)
            self._lists[state.user_id] = _Lists(ours, popularity_top(self._popularity(trigger.ts), state.courses, k))

    def _popularity(self, t: int) -> list[str]:
        if t - self._pop_at >= self.config.baseline_refresh_ms:
            self._pop_at = t
            self._pop_order = [c for c, _ in sorted(self._engaged.items(), key=lambda kv: (-kv[1], kv[0]))]
        return self._pop_order

    def _snapshot(self, user: str, state: UserState, t: int, x: dict[str, float] | None = None,
                  risk: float | None = None) -> None:
        """Record a risk for evaluation; with labels, queue the example for learning later.

        ``x`` and ``risk``: the user's features at ``t`` and the churn model's risk from them,
        when already computed (by the silence check), else computed here.
        """
        if x is None:
            x = self.churn_of(user).features(state, t)
        if self.scorer:
            risk = self.scorer(user, state, t)
        elif risk is None:
            risk = self.churn_of(user).classifier.predict_proba(x)
        self.r.snapshots.append((user, t, risk))
        self.r.snapshot_recency.append(max(0.0, (t - state.last_ts) / DAY_MS))
        self._queue_label(user, t, x)

    def _risk(self, user: str, state: UserState, t: int) -> float:
        return self.scorer(user, state, t) if self.scorer else self.churn_of(user).risk(state, t)

    def _queue_label(self, user: str, t: int, x: dict[str, float]) -> None:
        if self.learn_from_labels:
            c = self.labels._final().get(user)  # only its time is used here: when it may be learned
            horizon = int(self.config.horizon_days * DAY_MS)
            positive = c is not None and c <= t + horizon
            # both classes are learned H after the snapshot, when either is known: learning a
            # churn as soon as it happens (a return only after H) fed the model recent positives
            # and months-old negatives, and its risks drifted up with the label delay
            known_at = t + horizon
            heapq.heappush(self._pending_labels, (known_at, int(positive), user, t, tuple(x.values())))

    def _learn_resolved(self, clock: int) -> None:
        pending = self._pending_labels
        while pending and pending[0][0] <= clock:
            _, y, user, _, values = heapq.heappop(pending)
            churn = self.churn_of(user)
            churn.classifier.learn(dict(zip(churn.feature_names, values, strict=True)), bool(y))

    def _advance(self, t: int) -> None:
        """Event time moves to ``t``: delayed labels reach the model, and the as-of cut.

        Silent users are scored inside the step, when a partition's watermark moves (its
        largest event time less the allowed lateness), as in the worker."""
        if not self._as_of_done and self.config.as_of is not None and t > self.config.as_of:
            self._as_of_done = True
            as_of = self.config.as_of
            self._learn_resolved(as_of)
            for pm in list(self.models.values()):
                pm.retention.on_watermark(as_of, self.states.get)
            recent = as_of - int(self.config.as_of_active_days * DAY_MS)
            for user, state in self.states.items():
                if state.last_ts >= recent:  # the platform's current users at the cut-off
                    self.r.as_of.append((user, self._risk(user, state, as_of)))
        self.clock = t
        self.labels.advance(t)
        self._learn_resolved(t)

    # -- metrics -----------------------------------------------------------------------------

    def _churned_within(self, user: str, t: int, horizon_ms: int, end: int) -> bool | None:
        """Did the user churn in (t, t + H]? None when it cannot be known from the data."""
        if self.has_labels:
            # the label file says when a user left for good: a snapshot at t is positive when
            # that is no later than t + H (a user already gone is still a user who will not
            # come back in the next H days, which is what the model is asked)
            c = self.labels._final().get(user)
            return c is not None and c <= t + horizon_ms
        if t + horizon_ms > end:
            return None
        days = self._activity_days.get(user, [])
        i = bisect.bisect_right(days, t // DAY_MS)
        return not (i < len(days) and days[i] * DAY_MS <= t + horizon_ms)

    def report(self, elapsed: float) -> dict[str, Any]:
        cfg = self.config
        hits = self.r.hits
        n = len(hits)
        ours_hr = sum(h[1] is not None for h in hits) / n if n else 0.0
        base_hr = sum(h[2] is not None for h in hits) / n if n else 0.0
        per_user = [v for v in self.r.per_user.values() if v[0]]
        recs = {
            "discoveries": n,
            "hr@10": round(ours_hr, 4),
            "recall@10": round(float(np.mean([v[1] / v[0] for v in per_user])) if per_user else 0.0, 4),
            "ndcg@10": round(float(np.mean([ndcg_at(h[1], cfg.k) for h in hits])) if n else 0.0, 4),
            "coverage": round(len(self.r.recommended) / max(len(self.catalogue) or self.recommender.index.size, 1), 4),
            "baseline": {
                "name": "popularity so far",
                "hr@10": round(base_hr, 4),
                "recall@10": round(float(np.mean([v[2] / v[0] for v in per_user])) if per_user else 0.0, 4),
                "ndcg@10": round(float(np.mean([ndcg_at(h[2], cfg.k) for h in hits])) if n else 0.0, 4),
            },
            "lift_over_baseline": round(ours_hr / base_hr, 3) if base_hr else None,
            # lists ranked (with items) and published: the others were the same as the user's
            # last published one (COURSEPULSE_REC_REPUBLISH_S), as the worker leaves them
            "lists_ranked": self.lists_ranked,
            "lists_published": self.lists_published,
            "lists_per_event": round(self.lists_published / max(self.events, 1), 4),
        }
        horizon = int(cfg.horizon_days * DAY_MS)
        y, s, warm_y, warm_s = [], [], [], []
        warm_from = self._first_ts + int(cfg.warmup_days * DAY_MS)
        for user, t, risk in self.r.snapshots:
            label = self._churned_within(user, t, horizon, self.clock)
            if label is not None:
                y.append(label)
                s.append(risk)
                if t >= warm_from:
                    warm_y.append(label)
                    warm_s.append(risk)
        churn: dict[str, Any] = {
            "horizon_days": cfg.horizon_days,
            "labels": "file" if self.has_labels else "inactivity",
            "snapshots": len(y),
            "positives": int(sum(y)),
            "roc_auc": _round(roc_auc(y, s)),
            "pr_auc": _round(average_precision(y, s)),
            "warmup_days": cfg.warmup_days,
            "roc_auc_after_warmup": _round(roc_auc(warm_y, warm_s)),
            "pr_auc_after_warmup": _round(average_precision(warm_y, warm_s)),
            "alerts": len(self.r.alerts),
            "alert_precision": _round(self._alert_precision(horizon)),
            "alert_timing": self._alert_timing(horizon) if self.has_labels else None,
            **self._baselines(horizon),
            "examples_learned": sum(pm.retention.churn.classifier.n_learned for pm in self.models.values()),
            "learned_from": "label file (once in the past)" if self.learn_from_labels else "inactivity (own delayed labels)",
        }
        if cfg.as_of is not None:
            ya, sa = [], []
            final = self.labels._final()
            for user, risk in self.r.as_of:
                if self.has_labels:
                    c = final.get(user)
                    if c is not None and c <= cfg.as_of:
                        continue
                    ya.append(c is not None)
                else:
                    label = self._churned_within(user, cfg.as_of, horizon, self.clock)
                    if label is None:
                        continue
                    ya.append(label)
                sa.append(risk)
            churn["as_of"] = cfg.as_of
            churn["as_of_users"] = len(ya)
            churn["as_of_auc"] = _round(roc_auc(ya, sa))
        return {
            "recs": recs,
            "churn": churn,
            "events": self.events,
            "users": len(self.states),
            "catalogue": len(self.catalogue),
            "events_per_s": round(self.events / elapsed, 1) if elapsed > 0 else None,
            "elapsed_s": round(elapsed, 3),
            "batches": self.batches,
            "config": {"k": cfg.k, "horizon_days": cfg.horizon_days, "rec_interval_ms": cfg.rec_interval_ms,
                       "batch_events": cfg.batch_events, "batch_window_ms": cfg.batch_window_ms,
                       "neighbours_refresh_ms": cfg.neighbours_refresh_ms, "partitions": cfg.partitions,
                       "similarity": self.recommender.measure, "seed": cfg.seed},
        }

    def _baselines(self, horizon: int) -> dict[str, Any]:
        """Recency-only risk on the same snapshots, and the alerts' lift over the base rate."""
        def label(user: str, t: int) -> bool | None:
            return self._churned_within(user, t, horizon, self.clock)

        lift = alert_lift(self.r.alerts, self.r.snapshots, label, recency_days=self.r.snapshot_recency)
        return {"baseline": recency_baseline(self.r.snapshots, self.r.snapshot_recency, label),
                "alert_lift": lift.pop("alert_lift"), "alert_judging": lift,
                "alerts_per_active_user": round(len(self.r.alerts) / len(self.states), 4) if self.states else None}

    def _alert_precision(self, horizon: int) -> float | None:
        users: dict[str, int] = {}
        for user, t, _ in self.r.alerts:
            users.setdefault(user, t)
        if not users:
            return None
        correct = 0
        for user, t in users.items():
            if self.has_labels:
                correct += self.labels._final().get(user) is not None
            else:
                correct += bool(self._churned_within(user, t, horizon, 2**62))
        return correct / len(users)

    def _alert_timing(self, horizon: int) -> dict[str, Any]:
        """How early alerts came for users who really churned (labels give ``churned_at``).

        Churn is confirmed once a user has stayed away ``H`` days after leaving; the lead time is
        how long before that confirmation the first alert of the episode came. Also reported: how
        long after the churn time itself (for the simulator, the user's last event) it came.
        """
        final = self.labels._final()
        churners = {u: c for u, c in final.items() if c is not None and u in self.states}
        first: dict[str, int] = {}
        for user, t, _ in self.r.alerts:
            c = churners.get(user)
            if c is not None and c - horizon <= t <= c + horizon and user not in first:
                first[user] = t
        leads = [(churners[u] + horizon - t) / DAY_MS for u, t in first.items()]
        after = [(t - churners[u]) / DAY_MS for u, t in first.items()]
        return {
            "churners": len(churners),
            "alerted_within_horizon": len(first),
            "alerted_before_confirmed": sum(1 for x in leads if x > 0),
            "median_lead_days_before_confirmed": round(float(np.median(leads)), 2) if leads else None,
            "median_days_after_churn_time": round(float(np.median(after)), 2) if after else None,
        }

    def series(self, bucket_ms: int = 7 * DAY_MS) -> dict[str, list[tuple[int, float, float, int]]]:
        """HR@10 of ours and the baseline per event-time bucket: ``(bucket start, ours, base, n)``."""
        buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for t, ours, base in self.r.hits:
            b = buckets[t // bucket_ms * bucket_ms]
            b[0] += 1
            b[1] += ours is not None
            b[2] += base is not None
        return {"hr": [(k, v[1] / v[0], v[2] / v[0], v[0]) for k, v in sorted(buckets.items())]}

    def churn_series(self, bucket_ms: int = 7 * DAY_MS) -> list[tuple[int, float]]:
        """ROC AUC of the risk snapshots per event-time bucket (buckets with both classes)."""
        horizon = int(self.config.horizon_days * DAY_MS)
        buckets: dict[int, tuple[list[bool], list[float]]] = defaultdict(lambda: ([], []))
        for user, t, risk in self.r.snapshots:
            label = self._churned_within(user, t, horizon, self.clock)
            if label is not None:
                ys, ss = buckets[t // bucket_ms * bucket_ms]
                ys.append(label)
                ss.append(risk)
        out = []
        for k, (ys, ss) in sorted(buckets.items()):
            auc = roc_auc(ys, ss)
            if auc is not None:
                out.append((k, auc))
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
