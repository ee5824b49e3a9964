"""Churn and repurchase propensity: event-time features, an online classifier, delayed labels.

Plain objects, no Kafka: the live agent, offline replay and evaluation run this code. Every time
is event time in epoch milliseconds; nothing reads the wall clock, so a replay at any speed gives
the same model.

A prediction made at time ``t0`` is labelled only later (DESIGN.md, "Churn with delayed labels"):
:class:`DelayedLabels` keeps one pending snapshot per user and resolves it when the user comes back
(or buys) or when the partition's watermark passes ``t0 + horizon``. :class:`ChurnModel` and
:class:`RepurchaseModel` glue features, labels and :class:`OnlineClassifier` together.

Typical use from an agent, after ``state.apply(event)``::

    churn.observe(state, event.ts, is_purchase=..., avg_ltv=stats.avg_ltv)  # labels + snapshot
    churn.advance(watermark)                                                 # expired -> churned
    churn.risk(state, now)                                                   # P(stays away)
"""

from __future__ import annotations

import heapq
import inspect
import logging
import math
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from river import compose, drift, linear_model, metrics, optim, preprocessing, tree

from models.activity import ACTIVITY_FEATURES, activity_feature_rows
from models.profile import DAY_MS, LONG_HL_DAYS, SHORT_HL_DAYS, UserState

__all__ = [
    "CHURN_FEATURES",
    "CHURN_FEATURE_NAMES",
    "FEATURES",
    "FEATURE_NAMES",
    "DEFAULT_AGES_DAYS",
    "ChurnModel",
    "DelayedLabels",
    "OnlineClassifier",
    "PackedRows",
    "RepurchaseModel",
    "churn_feature_rows",
    "churn_features",
    "clone",
    "pack_rows",
    "unpack_row",
]

logger = logging.getLogger(__name__)

#: caps of the day-valued features, so a long-gone user stays a finite, bounded point
RECENCY_CAP_DAYS = 90.0
PURCHASE_CAP_DAYS = 90.0
#: decayed short/long ratio of a user whose activity rate is constant
_STEADY_RATIO = SHORT_HL_DAYS / LONG_HL_DAYS
_TREND_MAX = LONG_HL_DAYS / SHORT_HL_DAYS

#: every feature of :func:`churn_features`, with what it measures (one line each)
FEATURES: dict[str, str] = {
    "recency_days": f"days since the last event, capped at {RECENCY_CAP_DAYS:g}",
    "tenure_log": "log1p of days since the first event",
    "sessions_per_week": "sessions per week of tenure (tenure counted as at least one week)",
    "recency_log": "log1p of recency_days (silence matters most in its first days)",
    "silence_ratio": "log1p of recency over the user's usual gap between sessions (7 / sessions_per_week days)",
    "events_log": "log1p of views + purchases + shares",
    "watch_short": f"log1p of watch hours decayed with the {SHORT_HL_DAYS:g}-day half-life",
    "watch_long": f"log1p of watch hours decayed with the {LONG_HL_DAYS:g}-day half-life",
    "watch_trend": "decayed short/long watch ratio over its steady-state ratio: 1 steady, <1 "
    f"falling, in [0, {_TREND_MAX:g}] (event counts when nothing was watched)",
    "watch_per_session": "log1p of minutes watched per session",
    "completion_rate": "courses completed / courses touched, in [0, 1]",
    "purchases_log": "log1p of purchases",
    "days_since_purchase": f"days since the last purchase, capped at {PURCHASE_CAP_DAYS:g} "
    "(the cap when never)",
    "has_plan": "1 with a subscription plan, else 0",
    "shares_log": "log1p of shares",
    "activity_log": "log1p of the profile's activity (sessions + hours + purchases + shares per day)",
    "loyalty_log": "log1p of the profile's loyalty (purchases x spend x hours / average LTV)",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
#: what the churn model sees: :data:`FEATURES` and the activity-log features of dropout studies
CHURN_FEATURES: dict[str, str] = {**FEATURES, **ACTIVITY_FEATURES}
CHURN_FEATURE_NAMES: tuple[str, ...] = tuple(CHURN_FEATURES)

#: ``model="binned"``: bin edges per feature; each value also turns on one indicator of its bin,
#: so the logistic model learns any shape of a feature's effect, not only a slope
_L = math.log1p
BINS: dict[str, tuple[float, ...]] = {
    "recency_days": (0.25, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 21.0, 30.0, 60.0),
    "active_days_7": (0.5, 1.5, 2.5, 3.5, 5.5),
    "active_days_28": (0.5, 1.5, 3.5, 6.5, 10.5, 15.5, 21.5),
    "active_trend": (-0.6, -0.2, 0.2, 0.6),
    "tenure_log": tuple(_L(d) for d in (1, 3, 7, 14, 30, 60, 120, 365)),
    "events_log": tuple(_L(n) for n in (1, 3, 10, 30, 100, 300, 1000)),
    "gap_max_days": (1.5, 2.5, 4.0, 7.0, 14.0, 30.0),
    "silence_over_gap": tuple(_L(r) for r in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)),
    "missed_expected": (0.25, 0.75, 1.5, 3.0, 5.0, 8.0),
    "progress_recent": (0.1, 0.3, 0.5, 0.7, 0.9),
    "weekday_regularity": (0.1, 0.25, 0.5),
}
#: pairs whose joint bin is an indicator too: interactions a sum of single effects cannot express
#: (a week's silence means little from a weekly visitor and much from a daily one)
CROSSES: tuple[tuple[str, str], ...] = (
    ("recency_days", "active_days_28"),
    ("recency_days", "gap_max_days"),
    ("recency_days", "tenure_log"),
    ("silence_over_gap", "events_log"),
)


def _bin(edges: tuple[float, ...], v: float) -> int:
    lo, hi = 0, len(edges)
    while lo < hi:  # bisect_right, inlined
        mid = (lo + hi) // 2
        if v < edges[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def bin_indicators(x: Mapping[str, float]) -> dict[str, float]:
    """The bin (``name#i``) and joint-bin (``a*b#i,j``) indicators of ``x`` (see :data:`BINS`).

    >>> bin_indicators({"recency_days": 4.0, "active_days_28": 0.0})
    {'recency_days#4': 1.0, 'active_days_28#0': 1.0, 'recency_days*active_days_28#4,0': 1.0}
    """
    out: dict[str, float] = {}
    bins: dict[str, int] = {}
    for name, edges, keys in _BIN_KEYS:
        v = x.get(name)
        if v is not None:
            b = bins[name] = _bin(edges, v)
            out[keys[b]] = 1.0
    for a, b, keys in _CROSS_KEYS:
        if a in bins and b in bins:
            out[keys[bins[a]][bins[b]]] = 1.0
    return out


#: the indicator names of every bin (``name#i``) and joint bin (``a*b#i,j``), built once
_BIN_KEYS: tuple[tuple[str, tuple[float, ...], tuple[str, ...]], ...] = tuple(
    (name, edges, tuple(f"{name}#{i}" for i in range(len(edges) + 1))) for name, edges in BINS.items())
_CROSS_KEYS: tuple[tuple[str, str, tuple[tuple[str, ...], ...]], ...] = tuple(
    (a, b, tuple(tuple(f"{a}*{b}#{i},{j}" for j in range(len(BINS[b]) + 1)) for i in range(len(BINS[a]) + 1)))
    for a, b in CROSSES)


def _origin(key: str) -> list[str]:
    """The feature(s) an expanded key comes from."""
    name = key.split("#", 1)[0]
    return name.split("*")

T = TypeVar("T")


def clone(obj: T) -> T:
    """A fresh, unfitted copy of ``obj`` built from its constructor arguments (as River does).

    Works for every class whose constructor arguments are stored under the same name.
    """
    params = inspect.signature(type(obj).__init__).parameters
    kwargs = {name: getattr(obj, name) for name in params if name != "self"}
    return type(obj)(**kwargs)  # type: ignore[call-arg]


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else 0.0


_LN2 = math.log(2.0)


def churn_features(state: UserState, now: int, avg_ltv: float = 0.0) -> dict[str, float]:
    """The user's features as of event time ``now`` (see :data:`FEATURES`); finite floats only.

    ``avg_ltv`` is the partition's mean spend of paying users (``PartitionStats.avg_ltv``); with
    0 the loyalty feature is 0. Does not modify ``state``.
    """
    return churn_feature_rows(state, (now,), avg_ltv)[0]


def churn_feature_rows(
    state: UserState, times: Iterable[int], avg_ltv: float = 0.0
) -> list[dict[str, float]]:
    """:func:`churn_features` at each event time of ``times``, computing the parts that do not
    depend on the time once (same values, bit for bit, as one call per time).

    The profile figures are those of :func:`models.profile.build_profile` (rounded as published)
    without building the profile.
    """
    # the time-invariant parts
    sessions = max(state.sessions, 0)
    last_ts, first_ts = state.last_ts, state.first_ts
    hours = state.watch_s / 3600.0
    purchases, spend = state.purchases, state.spend
    loyalty = purchases * spend * hours / avg_ltv if avg_ltv > 0 else 0.0
    loyalty_log = math.log1p(max(round(loyalty, 4), 0.0))
    activity_sum = state.sessions + hours + purchases + state.shares
    events_log = math.log1p(max(0, state.views + purchases + state.shares))
    watch_per_session = math.log1p(max(state.watch_s, 0.0) / 60.0 / max(sessions, 1))
    completion_rate = min(1.0, max(state.completed, 0) / max(len(state.courses), 1))
    purchases_log = math.log1p(max(purchases, 0))
    has_plan = 1.0 if state.plan else 0.0
    shares_log = math.log1p(max(state.shares, 0))
    last_purchase_ts = state.last_purchase_ts
    decay_ts = state.decay_ts
    w_short, w_long = state.watch_short, state.watch_long
    e_short, e_long = state.events_short, state.events_long
    rows = []
    # min(c, v) is written ``v if v < c else c`` and max(v, c) ``c if v < c else v``: the same
    # value as the builtins for every float, without a call
    for now in times:
        # build_profile's recency, tenure and activity (rounded as in the profile)
        d = (now - last_ts) / DAY_MS
        recency = round(d, 3) if d > 0.0 else 0.0
        recency = recency if recency < RECENCY_CAP_DAYS else RECENCY_CAP_DAYS
        t = ((now if now >= last_ts else last_ts) - first_ts) / DAY_MS
        if not t > 0.0:
            t = 0.0
        tenure_days = round(t, 3)
        activity = round(activity_sum / (t if t > 1.0 else 1.0), 4)
        # UserState.activity_at(now)
        dt = now - decay_ts
        if dt > 0:
            days = dt / DAY_MS
            fs, fl = 2.0 ** (-days / SHORT_HL_DAYS), 2.0 ** (-days / LONG_HL_DAYS)
            ws, wl, es, el = w_short * fs, w_long * fl, e_short * fs, e_long * fl
        else:  # factors of exactly 1.0
            ws, wl, es, el = w_short, w_long, e_short, e_long
        if wl > 1.0:
            ratio = ws / wl
        elif el > 1e-9:
            ratio = es / el
        else:
            ratio = 0.0
        if last_purchase_ts > 0:
            since = (now - last_purchase_ts) / DAY_MS
            since = since if since > 0.0 else 0.0
            since_purchase = float(since if since < PURCHASE_CAP_DAYS else PURCHASE_CAP_DAYS)
        else:
            since_purchase = PURCHASE_CAP_DAYS
        weeks = tenure_days / 7.0
        per_week = sessions / (1.0 if weeks < 1.0 else weeks)
        trend = ratio / _STEADY_RATIO
        trend = trend if trend > 0.0 else 0.0
        x = {  # the keys in FEATURES order (snapshots store the values as a tuple)
            "recency_days": recency,
            "tenure_log": math.log1p(tenure_days),
            "sessions_per_week": per_week,
            "recency_log": math.log1p(recency),
            "silence_ratio": math.log1p(recency * per_week / 7.0),
            "events_log": events_log,
            "watch_short": math.log1p((0.0 if ws < 0.0 else ws) / 3600.0),
            "watch_long": math.log1p((0.0 if wl < 0.0 else wl) / 3600.0),
            "watch_trend": float(trend if trend < _TREND_MAX else _TREND_MAX),
            "watch_per_session": watch_per_session,
            "completion_rate": completion_rate,
            "purchases_log": purchases_log,
            "days_since_purchase": since_purchase,
            "has_plan": has_plan,
            "shares_log": shares_log,
            "activity_log": math.log1p(0.0 if activity < 0.0 else activity),
            "loyalty_log": loyalty_log,
        }
        if not math.isfinite(sum(x.values())):  # a sum of finite values is finite or inf
            x = {k: _finite(v) for k, v in x.items()}
        rows.append(x)
    return rows


class OnlineClassifier:
    """Binary online classifier with drift monitoring, for churn and repurchase alike.

    ``model="logreg"``: ``StandardScaler() | LogisticRegression(SGD(lr), l2)``.
    ``model="binned"``: the same logistic model over the standardised features plus one
    indicator per feature bin and per joint bin of :data:`CROSSES` (:func:`bin_indicators`,
    not scaled): a shape per feature and the interactions of silence with the user's own pace,
    at a linear model's cost; contributions still add up exactly (a bin's weight counts for its
    feature, a joint bin's half for each).
    ``model="tree"``: a ``HoeffdingAdaptiveTreeClassifier`` predicts; the logistic pipeline is
    trained alongside and serves :meth:`contributions` (an approximation: the tree's own output is
    not additive, so there the contributions do not sum to the tree's logit).
    An ADWIN watches the absolute error ``|y - p|`` (``p`` predicted before learning); a drift is
    counted in ``drift_count``, its event time kept in ``last_drift_at`` and logged. Learning is
    not reset on drift: SGD keeps adapting; the count is a monitoring signal.
    """

    MODELS = ("logreg", "tree", "binned")
    RESOLVED_WINDOW = 2000

    def __init__(
        self,
        l2: float = 0.0,
        lr: float = 0.02,
        model: str = "logreg",
        seed: int = 0,
        drift_delta: float = 0.002,
        intercept_init: float = 0.0,
        prior_examples: int = 0,
        prior_feature: str = "recency_days",
        prior_scale: float = 14.0,
    ) -> None:
        if not (isinstance(intercept_init, int | float) and math.isfinite(intercept_init)):
            msg = f"intercept_init must be a finite number, got {intercept_init!r}"
            raise ValueError(msg)
        if not (isinstance(l2, int | float) and l2 >= 0 and math.isfinite(l2)):
            msg = f"l2 must be a finite number >= 0, got {l2!r}"
            raise ValueError(msg)
        if not (isinstance(lr, int | float) and 0 < lr and math.isfinite(lr)):
            msg = f"lr must be a finite number > 0, got {lr!r}"
            raise ValueError(msg)
        if model not in self.MODELS:
            msg = f"model must be one of {self.MODELS}, got {model!r}"
            raise ValueError(msg)
        if not isinstance(seed, int):
            msg = f"seed must be an int, got {seed!r}"
            raise ValueError(msg)
        if not 0 < drift_delta < 1:
            msg = f"drift_delta must be in (0, 1), got {drift_delta!r}"
            raise ValueError(msg)
        if not (isinstance(prior_examples, int) and prior_examples >= 0):
            msg = f"prior_examples must be an int >= 0, got {prior_examples!r}"
            raise ValueError(msg)
        if not (isinstance(prior_scale, int | float) and prior_scale > 0 and math.isfinite(prior_scale)):
            msg = f"prior_scale must be a finite number > 0, got {prior_scale!r}"
            raise ValueError(msg)
        self.l2 = l2
        self.lr = lr
        self.model = model
        self.seed = seed
        self.drift_delta = drift_delta
        #: starting log-odds (e.g. of a rare outcome's prior): River's ``intercept_init``
        self.intercept_init = intercept_init
        #: a young model's probability is blended with ``1 - exp(-x[prior_feature] / prior_scale)``
        #: (e.g. silence over the horizon) as if from this many examples: it ranks by the prior
        #: before it has learned anything and by what it learned once it has learned plenty
        self.prior_examples = prior_examples
        self.prior_feature = prior_feature
        self.prior_scale = prior_scale
        self._scaler = preprocessing.StandardScaler()
        self._logreg = linear_model.LogisticRegression(
            optimizer=optim.SGD(lr), l2=l2, intercept_lr=lr, intercept_init=intercept_init
        )
        self._linear = self._scaler | self._logreg
        self._tree = tree.HoeffdingAdaptiveTreeClassifier(seed=seed) if model == "tree" else None
        self._adwin = drift.ADWIN(delta=drift_delta)
        #: the last ``RESOLVED_WINDOW`` (probability predicted before learning, label) pairs:
        #: what an alert threshold is calibrated on (with a prior: of examples silent >= 1 day)
        self.resolved: deque[tuple[float, bool]] = deque(maxlen=self.RESOLVED_WINDOW)
        self.n_learned = 0
        self.drift_count = 0
        self.last_drift_at: int | None = None
        #: the merge of every partition's classifier (``models.pooling.SharedModel``) that
        #: predicts once it has learned more labels than this one; not learned state of this
        #: classifier: never pickled (a checkpoint holds this partition's own model only)
        self.shared: Any = None

    def clone(self) -> OnlineClassifier:
        return clone(self)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("shared", None)
        return state

    @property
    def merged_labels(self) -> int | None:
        """Labels of the merged classifier that predicts for this one, or None (this one predicts)."""
        pooled = self._pooled()
        return None if pooled is None else pooled.n_learned

    def _pooled(self) -> OnlineClassifier | None:
        """The merged classifier when it knows more than this one (see :attr:`shared`)."""
        shared = self.shared
        if shared is None:  # the common case without sharing: one attribute read
            return None
        merged: OnlineClassifier | None = shared.get(self)
        return merged if merged is not None and merged.n_learned > self.n_learned else None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # checkpoints written before the prior existed load as classifiers without one
        state.setdefault("prior_examples", 0)
        state.setdefault("prior_feature", "recency_days")
        state.setdefault("prior_scale", 14.0)
        state.setdefault("resolved", deque(maxlen=self.RESOLVED_WINDOW))
        state.setdefault("shared", None)
        self.__dict__.update(state)

    def predict_proba(self, x: Mapping[str, float]) -> float:
        """Probability of the positive class; 0.5 before anything was learned (without a prior)."""
        n0 = self.prior_examples
        if n0:
            prior = 1.0 - math.exp(-max(0.0, float(x.get(self.prior_feature, 0.0))) / self.prior_scale)
            model = self._pooled() or self
            n = model.n_learned
            return (n * model._predict_own(x) + n0 * prior) / (n + n0)
        return self.predict_learned(x)

    def predict_learned(self, x: Mapping[str, float], bins: dict[str, float] | None = None) -> float:
        """The learned model's probability alone (without the prior): what ``contributions`` explain.

        ``bins``: ``bin_indicators(x)`` when already computed (the binned model). The merged
        classifier of every partition answers when it knows more (:attr:`shared`)."""
        return (self._pooled() or self)._predict_own(x, bins)

    def _predict_own(self, x: Mapping[str, float], bins: dict[str, float] | None = None) -> float:
        """This classifier's own learned probability (a merge never delegates further)."""
        if self._tree is not None:
            proba = self._tree.predict_proba_one(dict(x))
            return float(proba.get(True, 0.0)) if proba else 0.5
        if self.model == "binned":
            return float(self._logreg.predict_proba_one(self._binned(x, bins))[True])
        if compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT:
            return float(self._linear.predict_proba_one(dict(x))[True])
        # the pipeline's own inference path, without its dispatch: scale, then the logistic model
        return float(self._logreg.predict_proba_one(self._scaler.transform_one(x))[True])

    def learn(self, x: Mapping[str, float], y: bool, t: int | None = None) -> float:
        """Learn one labelled example (``t``: its event time, for drift bookkeeping).

        Returns the probability predicted before learning. ``x`` is not modified.
        """
        bins = bin_indicators(x) if self.model == "binned" and self._tree is None else None
        model = self._pooled() or self  # what predicts: the merge when it knows more
        p = model._predict_own(x, bins)
        y = bool(y)
        n0 = self.prior_examples
        if n0:  # with a silence prior, the silent examples only: those an alert is chosen among
            silence = max(0.0, float(x.get(self.prior_feature, 0.0)))
            if silence >= 1.0:
                prior = 1.0 - math.exp(-silence / self.prior_scale)
                n = model.n_learned
                self.resolved.append(((n * p + n0 * prior) / (n + n0), y))
        else:
            self.resolved.append((p, y))
        self._adwin.update(abs(float(y) - p))
        if self._adwin.drift_detected:
            self.drift_count += 1
            self.last_drift_at = t
            # a log line for the first drift and every 50th after it; the count is the metric
            (logger.info if self.drift_count % 50 == 1 else logger.debug)(
                "drift in the error stream after %d examples (event time %s): error now %.3f",
                self.n_learned, t, self._adwin.estimation,
            )
        if self.model == "binned":
            self._scaler.learn_one(x)
            self._logreg.learn_one(self._binned(x, bins), y)
        elif compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT:
            self._linear.learn_one(dict(x), y)
        else:  # what the pipeline's learn_one does: the scaler learns x, the model its scaling
            scaler = self._scaler
            scaler.learn_one(x)
            self._logreg.learn_one(scaler.transform_one(x), y)
        if self._tree is not None:
            self._tree.learn_one(dict(x), y)
        self.n_learned += 1
        return p

    def _binned(self, x: Mapping[str, float], bins: dict[str, float] | None = None) -> dict[str, float]:
        z = self._scaler.transform_one(x)  # read only: no copy needed
        z.update(bin_indicators(x) if bins is None else bins)
        return z

    @property
    def error(self) -> float:
        """Mean absolute error over ADWIN's current window (0 before any example)."""
        return float(self._adwin.estimation)

    @property
    def intercept(self) -> float:
        """The logistic model's intercept (log-odds)."""
        return float(self._logreg.intercept)

    def contributions(self, x: Mapping[str, float]) -> list[tuple[str, float, float]]:
        """(name, value, contribution) per feature, largest ``|contribution|`` first.

        A contribution is weight x standardised value, in log-odds, of the logistic model:
        ``intercept + sum(contributions) == logit(predict_proba(x))`` for ``model="logreg"``.
        The merged classifier's, when it is the one that predicts (:attr:`shared`).
        """
        pooled = self._pooled()
        if pooled is not None:
            return pooled.contributions(x)
        w = self._logreg.weights
        if self.model == "binned":
            contrib = dict.fromkeys(x, 0.0)
            for k, v in self._binned(x).items():
                parts = _origin(k)
                for name in parts:
                    if name in contrib:
                        contrib[name] += float(w.get(k, 0.0) * v) / len(parts)
            out = [(k, float(v), contrib[k]) for k, v in x.items()]
            out.sort(key=lambda item: -abs(item[2]))
            return out
        z = self._scaler.transform_one(x)  # read only: no copy needed
        out = [(k, float(v), float(w.get(k, 0.0) * z.get(k, 0.0))) for k, v in x.items()]
        out.sort(key=lambda item: -abs(item[2]))
        return out


class DelayedLabels:
    """Pending predictions waiting for their delayed label; at most one per user.

    ``snapshot(user_id, payload, t0)`` stores a pending snapshot unless the user already has one
    (the older one is kept until it resolves). It resolves in one of two ways:

    - ``on_activity(user_id, t, outcome)``: the user did something at ``t``;
    - ``advance(watermark)``: the watermark reached ``t0 + horizon_ms`` -> ``label_on_expiry``.

    ``label_on_expiry=True`` (churn, "inactive for the next H days"): any activity at least
    ``min_interval_ms`` after ``t0`` is a return and resolves to False (True if it came at or
    after ``t0 + horizon_ms``, i.e. before the watermark got there). Activity closer to ``t0``
    is the same visit: it resolves nothing, and a snapshot then is ignored, so a user is
    snapshotted at most once per ``min_interval_ms``.
    ``label_on_expiry=False`` (repurchase, "buys within H days"): only activity with
    ``outcome=True`` (a purchase) at or after ``t0`` resolves, to True (False when late);
    ``min_interval_ms`` plays no part.

    Expiries sit in a heap keyed by ``t0 + horizon_ms`` with lazy deletion, so ``advance`` costs
    O(resolved log n) and never scans the users; stale heap entries are compacted away when they
    outnumber the live ones.
    """

    def __init__(
        self,
        horizon_ms: int = 14 * DAY_MS,
        min_interval_ms: int = DAY_MS,
        label_on_expiry: bool = True,
    ) -> None:
        if not (isinstance(horizon_ms, int) and horizon_ms > 0):
            msg = f"horizon_ms must be an int > 0, got {horizon_ms!r}"
            raise ValueError(msg)
        if not (isinstance(min_interval_ms, int) and 0 <= min_interval_ms < horizon_ms):
            msg = f"min_interval_ms must be an int in [0, horizon_ms), got {min_interval_ms!r}"
            raise ValueError(msg)
        if not isinstance(label_on_expiry, bool):
            msg = f"label_on_expiry must be a bool, got {label_on_expiry!r}"
            raise ValueError(msg)
        self.horizon_ms = horizon_ms
        self.min_interval_ms = min_interval_ms
        self.label_on_expiry = label_on_expiry
        #: user_id -> (t0, payload, seq); seq identifies the live heap entry
        self._pending: dict[str, tuple[int, Any, int]] = {}
        #: (t0 + horizon_ms, seq, user_id)
        self._heap: list[tuple[int, int, str]] = []
        self._seq = 0
        self._stale = 0
        #: heap entries popped by advance (live or stale): the work done, for tests and metrics
        self.pops = 0

    def clone(self) -> DelayedLabels:
        return clone(self)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._pending

    def pending_since(self, user_id: str) -> int | None:
        """Event time of the user's pending snapshot, or None."""
        entry = self._pending.get(user_id)
        return entry[0] if entry else None

    def snapshot(self, user_id: str, payload: Any, t: int) -> bool:
        """Keep ``payload`` (features) as the user's pending snapshot at ``t``; False if one is."""
        if user_id in self._pending:
            return False
        self._seq += 1
        self._pending[user_id] = (t, payload, self._seq)
        heapq.heappush(self._heap, (t + self.horizon_ms, self._seq, user_id))
        return True

    def on_activity(self, user_id: str, t: int, outcome: bool = True) -> list[tuple[Any, bool]]:
        """Resolve the user's pending snapshot with activity at ``t`` (rules in the class doc)."""
        entry = self._pending.get(user_id)
        if entry is None or not outcome:
            return []
        t0, payload, _ = entry
        if self.label_on_expiry:
            if t - t0 < self.min_interval_ms:
                return []
            label = t - t0 >= self.horizon_ms
        else:
            if t < t0:
                return []
            label = t - t0 < self.horizon_ms
        self._drop(user_id)
        return [(payload, label)]

    def advance(self, watermark: int) -> list[tuple[Any, bool, str]]:
        """Resolve every snapshot with ``t0 + horizon_ms <= watermark`` to ``label_on_expiry``."""
        out: list[tuple[Any, bool, str]] = []
        heap, pending = self._heap, self._pending
        while heap and heap[0][0] <= watermark:
            _, seq, user_id = heapq.heappop(heap)
            self.pops += 1
            entry = pending.get(user_id)
            if entry is None or entry[2] != seq:
                self._stale -= 1
                continue
            del pending[user_id]
            out.append((entry[1], self.label_on_expiry, user_id))
        return out

    def forget(self, user_id: str) -> None:
        """Drop the user's pending snapshot, if any (e.g. the user was deleted)."""
        if user_id in self._pending:
            self._drop(user_id)

    def _drop(self, user_id: str) -> None:
        del self._pending[user_id]
        self._stale += 1
        if self._stale > len(self._pending) + 1024:
            self._heap = [(t0 + self.horizon_ms, seq, u) for u, (t0, _, seq) in self._pending.items()]
            heapq.heapify(self._heap)
            self._stale = 0


#: equal-length feature rows as doubles: the first row whole, the columns that differ in any
#: later row (their indexes), and those columns of each later row, row after row
PackedRows = tuple[array, bytes, array]


def pack_rows(rows: list[list[float]]) -> PackedRows:
    """Equal-length rows of floats kept compactly, and exactly (:func:`unpack_row` inverts it).

    A snapshot's rows are one user's features at several silence ages: most features (counts,
    totals, shares of the past) are the same at every age, so only the columns that change are
    kept per row (a NaN counts as changing, -0.0 as another value than 0.0).

    >>> packed = pack_rows([[1.0, 2.0, 3.0], [1.0, 5.0, 3.0]])
    >>> bytes(packed[1]), [unpack_row(packed, i) for i in range(2)]
    (b'\\x01', [[1.0, 2.0, 3.0], [1.0, 5.0, 3.0]])
    """
    first = rows[0]
    if len(first) > 255:
        msg = f"pack_rows keeps column indexes in bytes: at most 255 columns, got {len(first)}"
        raise ValueError(msg)
    cols = bytes(j for j, v in enumerate(first) if any(not _same(row[j], v) for row in rows[1:]))
    return array("d", first), cols, array("d", [row[j] for row in rows[1:] for j in cols])


def _same(a: float, b: float) -> bool:
    """Equal as stored: a NaN is never the same, 0.0 is not -0.0."""
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def unpack_row(packed: PackedRows, i: int) -> list[float]:
    """Row ``i`` of :func:`pack_rows`' rows."""
    first, cols, rest = packed
    row = first.tolist()
    if i:
        k = len(cols)
        for j, v in zip(cols, rest[(i - 1) * k:i * k], strict=True):
            row[j] = v
    return row


class _DelayedOutcomeModel:
    """Features + :class:`OnlineClassifier` + :class:`DelayedLabels`; subclasses set the label.

    The snapshot taken at ``t0`` holds the features the user would have at each silence age in
    ``_ages()`` (``t0 + age``, assuming no further activity) and the model's prediction for each,
    made then. When the label resolves, one example is learned per age the user actually stayed
    silent for, so the model is trained on the same queries it is asked during a silence
    (``risk(state, last_ts + 3 days)``) and not only at event times, where recency is always 0.
    The predictions feed ``metric`` (ROC AUC): prequential evaluation with delayed labels.
    """

    _LABEL_ON_EXPIRY = True
    #: learn a label resolved early (a return) only at ``t0 + horizon``, when the other class
    #: (a silence through the horizon) is known too: without it the model learns returns at
    #: once and churns H days late, and its risks drift with the label delay
    _HOLD_LABELS = False
    #: examples' worth of the recency prior a young classifier is blended with (0: none)
    _PRIOR_EXAMPLES = 0

    def _setup(self, horizon_days: float, min_interval_days: float, l2: float, lr: float,
               model: str, seed: int) -> None:
        self.horizon_days = horizon_days
        self.l2 = l2
        self.lr = lr
        self.model = model
        self.seed = seed
        if not (isinstance(horizon_days, int | float) and 0 < horizon_days < 10_000):
            msg = f"horizon_days must be a number in (0, 10000), got {horizon_days!r}"
            raise ValueError(msg)
        if not (isinstance(min_interval_days, int | float) and 0 <= min_interval_days < horizon_days):
            msg = f"min_interval_days must be in [0, horizon_days), got {min_interval_days!r}"
            raise ValueError(msg)
        self.classifier = OnlineClassifier(l2=l2, lr=lr, model=model, seed=seed,
                                           prior_examples=self._PRIOR_EXAMPLES, prior_scale=horizon_days)
        #: labels resolved before ``t0 + horizon`` wait here until then (``_HOLD_LABELS``):
        #: (due, seq, payload, label, resolved at)
        self._held: list[tuple[int, int, Any, bool, int | None]] = []
        self._held_seq = 0
        self.labels = DelayedLabels(
            horizon_ms=int(horizon_days * DAY_MS),
            min_interval_ms=int(min_interval_days * DAY_MS),
            label_on_expiry=self._LABEL_ON_EXPIRY,
        )
        self.metric = metrics.ROCAUC(n_thresholds=20)

    def clone(self) -> Any:
        return clone(self)

    def _ages(self) -> tuple[float, ...]:
        return (0.0,)

    #: the names of :meth:`features`, in order (snapshots keep the values as a tuple)
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def _feature_rows(self, state: UserState, times: Iterable[int], avg_ltv: float) -> list[dict[str, float]]:
        return churn_feature_rows(state, times, avg_ltv)

    def features(self, state: UserState, now: int, avg_ltv: float = 0.0) -> dict[str, float]:
        """What the classifier is given for the user at event time ``now``."""
        return self._feature_rows(state, (now,), avg_ltv)[0]

    @property
    def n_learned(self) -> int:
        """Examples learned so far."""
        return self.classifier.n_learned

    def predict_proba(self, state: UserState, now: int, avg_ltv: float = 0.0) -> float:
        """Probability of the positive label for a query at event time ``now``."""
        return self.classifier.predict_proba(self.features(state, now, avg_ltv))

    def explain(
        self, state: UserState, now: int, top: int = 3, avg_ltv: float = 0.0
    ) -> list[dict[str, Any]]:
        """The ``top`` factors ``{name, value, contribution}`` (log-odds), largest first."""
        x = self.features(state, now, avg_ltv)
        return [
            {"name": k, "value": v, "contribution": c}
            for k, v, c in self.classifier.contributions(x)[:top]
        ]

    def _outcome(self, is_purchase: bool) -> bool:
        raise NotImplementedError

    def observe(
        self, state: UserState, event_ts: int, is_purchase: bool = False, avg_ltv: float = 0.0
    ) -> int:
        """Fold in one event of the user, after ``state.apply(event)``; returns examples learned.

        Resolves the user's pending snapshot (and learns from it), then snapshots the state if
        none is pending. ``state`` is not modified.
        """
        learned = 0
        for payload, label in self.labels.on_activity(
            state.user_id, event_ts, self._outcome(is_purchase)
        ):
            due = payload[0] + self.labels.horizon_ms
            if self._HOLD_LABELS and event_ts < due:
                self._held_seq += 1
                heapq.heappush(self._held, (due, self._held_seq, payload, label, event_ts))
            else:
                learned += self._learn(payload, label, event_ts)
        if state.user_id not in self.labels:
            t0 = max(event_ts, state.last_ts)
            rows = self._feature_rows(state, [t0 + int(age * DAY_MS) for age in self._ages()], avg_ltv)
            predict = self.classifier.predict_proba
            # in FEATURE_NAMES order, as doubles (8 bytes a value, not a float object's 24 + a
            # pointer), the later ages only where they differ from the first: one snapshot per
            # user is pending and several per user may be held
            feats = pack_rows([list(x.values()) for x in rows])
            preds = array("d", [predict(x) for x in rows])
            self.labels.snapshot(state.user_id, (t0, feats, preds), t0)
        return learned

    def advance(self, watermark: int) -> int:
        """Learn the labels of the snapshots that expired by ``watermark``; returns examples."""
        learned = 0
        held = self._held
        while held and held[0][0] <= watermark:
            _, _, payload, label, at = heapq.heappop(held)
            learned += self._learn(payload, label, at)
        for payload, label, _ in self.labels.advance(watermark):
            learned += self._learn(payload, label, None)
        return learned

    def forget(self, user_id: str) -> None:
        """Drop the user's pending snapshot."""
        self.labels.forget(user_id)

    def _learn(self, payload: tuple[int, PackedRows, array], label: bool, t: int | None) -> int:
        t0, feats, preds = payload
        end = t0 + self.labels.horizon_ms if t is None else t
        n = 0
        for i, (age, pred) in enumerate(zip(self._ages(), preds, strict=True)):
            at = t0 + int(age * DAY_MS)
            if age > 0 and at >= end:
                break  # the user was no longer silent at this age: never asked then
            row = unpack_row(feats, i)
            self.metric.update(label, pred)
            self.classifier.learn(dict(zip(self.feature_names, row, strict=True)), label, t=end)
            n += 1
        return n


#: silence ages (days) at which a churn snapshot also asks "will they be back?", for H >= 14
DEFAULT_AGES_DAYS = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0)


def default_ages(horizon_days: float) -> tuple[float, ...]:
    """:data:`DEFAULT_AGES_DAYS` for a horizon of 14 days or more; for a shorter horizon the same
    ages scaled by ``horizon_days / 14``, so every age stays below the horizon (any H > 0 runs)."""
    if not horizon_days > 0:
        msg = f"horizon_days must be > 0, got {horizon_days!r}"
        raise ValueError(msg)
    scale = min(1.0, horizon_days / 14.0)
    return tuple(round(a * scale, 6) for a in DEFAULT_AGES_DAYS)


class ChurnModel(_DelayedOutcomeModel):
    """Risk that a user stays away for ``horizon_days`` (no return on a later day).

    Label of a snapshot at ``t0``: True when no activity comes in
    ``[t0 + min_interval_days, t0 + horizon_days)``. Examples are learned at the silence ages
    ``ages_days`` (see :class:`_DelayedOutcomeModel`); each must be below ``horizon_days``.
    """

    _LABEL_ON_EXPIRY = True
    _HOLD_LABELS = True
    _PRIOR_EXAMPLES = 30_000

    def __init__(
        self,
        horizon_days: float = 14.0,
        min_interval_days: float | None = None,
        ages_days: tuple[float, ...] | None = None,
        l2: float = 0.0,
        lr: float = 0.02,
        model: str = "binned",
        seed: int = 0,
    ) -> None:
        if min_interval_days is None:  # one snapshot per user-day; more often under a short horizon
            min_interval_days = min(1.0, horizon_days / 2) if horizon_days > 0 else 1.0
        self.min_interval_days = min_interval_days
        if ages_days is None:  # the default ages, scaled down for horizons shorter than 14 days
            ages_days = default_ages(horizon_days)
        self.ages_days = tuple(ages_days) if isinstance(ages_days, Iterable) else ages_days
        self._setup(horizon_days, min_interval_days, l2, lr, model, seed)
        ages = self.ages_days
        if (
            not isinstance(ages, tuple)
            or not ages
            or ages[0] != 0
            or any(not isinstance(a, int | float) for a in ages)
            or any(b <= a for a, b in zip(ages, ages[1:], strict=False))
            or ages[-1] >= horizon_days
        ):
            msg = f"ages_days must increase from 0 and stay below horizon_days, got {ages_days!r}"
            raise ValueError(msg)

    def _ages(self) -> tuple[float, ...]:
        return self.ages_days

    feature_names = CHURN_FEATURE_NAMES

    def _feature_rows(self, state: UserState, times: Iterable[int], avg_ltv: float) -> list[dict[str, float]]:
        times = list(times)
        rows = churn_feature_rows(state, times, avg_ltv)
        for row, extra in zip(rows, activity_feature_rows(state, times), strict=True):
            row.update(extra)
        return rows

    def _outcome(self, is_purchase: bool) -> bool:
        return True  # any activity is a return

    def risk(self, state: UserState, now: int, avg_ltv: float = 0.0) -> float:
        """Probability that the user's silence reaches ``horizon_days`` from the last visit.

        Asked at ``now = last_ts + d`` (d days into a silence), as trained: see the class doc.
        """
        return self.predict_proba(state, now, avg_ltv)


class RepurchaseModel(_DelayedOutcomeModel):
    """Propensity of a user to buy within ``horizon_days`` of a query.

    Label of a snapshot at ``t0``: True when a purchase comes in ``[t0, t0 + horizon_days)``.
    One snapshot per user is pending at a time: taken at the first event without one, resolved by
    a purchase (and retaken at that purchase) or by expiry.
    """

    _LABEL_ON_EXPIRY = False

    def __init__(
        self,
        horizon_days: float = 14.0,
        l2: float = 0.0,
        lr: float = 0.02,
        model: str = "logreg",
        seed: int = 0,
    ) -> None:
        self._setup(horizon_days, 0.0, l2, lr, model, seed)

    def _outcome(self, is_purchase: bool) -> bool:
        return bool(is_purchase)

    def propensity(self, state: UserState, now: int, avg_ltv: float = 0.0) -> float:
        """Probability that the user buys within ``horizon_days`` of event time ``now``."""
        return self.predict_proba(state, now, avg_ltv)
