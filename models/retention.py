"""Everything one partition keeps for retention: churn and repurchase models, activity clusters,
the silence scheduler and the alert policy — one object, used by the live agent and by replay.

Per event (after ``state.apply``): :meth:`RetentionModels.observe`. When the partition's
watermark moves: :meth:`on_watermark`, which learns the labels that expired, then scores only
the users whose next check is due (an ordered structure, never a scan of every user) and returns
the alerts to send. :meth:`checkpoint` / :meth:`restore` carry the learned state (small: model
weights and open alert episodes) with the partition; pending label snapshots and the silence
schedule are rebuilt from the users' state after a move (:meth:`reschedule_all`).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from models.alerts import AlertBudget, AlertPolicy, PlatformActivity, SilenceScheduler
from models.checkpoint import unpickle_checkpoint
from models.churn import ChurnModel, RepurchaseModel, churn_features
from models.clusters import ActivityClusters
from models.profile import DAY_MS, SegmentRules, UserState, build_profile

__all__ = ["REPURCHASE_REASON_AT", "AlertDecision", "RetentionModels"]

#: repurchase propensity from which a bought course's follow-up is worded "continue with …"
REPURCHASE_REASON_AT = 0.5

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """An alert to publish, with what explains it."""

    user_id: str
    at: int
    risk: float
    threshold: float
    days_inactive: float
    segment: str
    factors: list[dict[str, Any]]
    action: str


class RetentionModels:
    """Churn risk, repurchase propensity, activity clusters and silence alerts of one partition."""

    def __init__(self, horizon_days: float = 14.0, threshold: float = 0.5, release: float = 0.4,
                 cooldown_days: float = 7.0, first_check_days: float = 3.0, recheck_days: float = 1.0,
                 rules: SegmentRules | None = None, seed: int = 0, self_supervised: bool = True,
                 alert_share: float = 0.02, alert_min_lift: float = 1.5) -> None:
        if recheck_days <= 0:
            msg = f"recheck_days must be > 0, got {recheck_days}"
            raise ValueError(msg)
        self.horizon_days = horizon_days
        self.threshold = threshold
        self.release = release
        self.cooldown_days = cooldown_days
        self.first_check_days = first_check_days
        self.recheck_days = recheck_days
        self.rules = rules or SegmentRules()
        self.seed = seed
        #: learn churn from the stream itself (returns vs silence past the horizon); False when
        #: an evaluator feeds ground-truth labels to ``churn.classifier`` instead
        self.self_supervised = self_supervised
        self.churn = ChurnModel(horizon_days=horizon_days, seed=seed)
        self.repurchase = RepurchaseModel(horizon_days=horizon_days, seed=seed)
        self.clusters = ActivityClusters(seed=seed)
        self.scheduler = SilenceScheduler(first_check_days=first_check_days)
        self.policy = AlertPolicy(threshold=threshold, release=release, cooldown_days=cooldown_days)
        self.alert_share = alert_share
        self.alert_min_lift = alert_min_lift
        #: the alert threshold calibrated on the churn model's resolved labels, and a daily budget
        self.budget = AlertBudget(share=alert_share, min_lift=alert_min_lift)
        self._calibrated_at = 0
        #: distinct active users per day: a silence that is the platform's own quiet is not alerted
        self.platform = PlatformActivity()
        self._clustered_day: dict[str, int] = {}
        self.watermark = 0
        #: the churn classifiers of every partition merged (``models.pooling.SharedModel``), or None
        self.shared: Any = None

    def share_with(self, shared: Any) -> None:  # noqa: ANN401 - a models.pooling.SharedModel
        """Score churn with ``shared``'s merge of every partition's classifier (None: this one's)."""
        self.shared = shared
        self.churn.classifier.shared = shared

    def share_due(self, partition: int) -> dict[str, Any] | None:
        """The churn classifier's parameters when this partition owes them to the others."""
        if self.shared is None:
            return None
        return self.shared.due(partition, self.churn.classifier)  # type: ignore[no-any-return]

    # -- the event path ------------------------------------------------------------------------

    def observe(self, state: UserState, ts: int, is_purchase: bool, avg_ltv: float = 0.0) -> None:
        """Fold in one applied event of the user."""
        if self.self_supervised:
            self.churn.observe(state, ts, is_purchase, avg_ltv)
        self.repurchase.observe(state, ts, is_purchase, avg_ltv)
        self.scheduler.touch(state.user_id, state.last_ts)
        self.policy.on_activity(state.user_id, ts)
        self.platform.active(state.user_id, ts)
        day = ts // DAY_MS
        if self._clustered_day.get(state.user_id) != day:  # clusters learn once per user-day
            self._clustered_day[state.user_id] = day
            self.clusters.learn(churn_features(state, ts, avg_ltv))

    def on_watermark(self, watermark: int, get_state: Callable[[str], UserState | None], avg_ltv: float = 0.0,
                     scored: list[tuple[str, int, float]] | None = None,
                     title_of: Callable[[str], str] | None = None,
                     scored_features: list[dict[str, float]] | None = None) -> list[AlertDecision]:
        """Learn expired labels; score the users whose silence check is due; return alerts.

        ``scored`` (optional) receives every ``(user_id, at, risk)`` computed, for evaluation, and
        ``scored_features`` (optional) the ``churn_features`` each risk was computed from, in the
        same order; ``title_of`` names courses in suggested actions (course ids otherwise).
        """
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        if self.self_supervised:
            self.churn.advance(watermark)
        self.repurchase.advance(watermark)
        alerts: list[AlertDecision] = []
        clf = self.churn.classifier
        if clf.n_learned - self._calibrated_at >= 250:  # recalibrate every 250 resolved labels
            self._calibrated_at = clf.n_learned
            self.budget.recalibrate(clf.resolved)
        threshold = self.budget.threshold(self.threshold)
        release = min(self.release, 0.8 * threshold)
        candidates: list[tuple[str, float, UserState, float]] = []
        for user_id in self.scheduler.due(watermark):
            state = get_state(user_id)
            if state is None:
                self.scheduler.forget(user_id)
                continue
            x = self.churn.features(state, watermark, avg_ltv)
            risk = self.churn.classifier.predict_proba(x)  # = self.churn.risk(state, watermark, avg_ltv)
            if scored is not None:
                scored.append((user_id, watermark, risk))
            if scored_features is not None:
                scored_features.append(x)
            days_inactive = max(0.0, (watermark - state.last_ts) / DAY_MS)
            if self.policy.is_open(user_id):
                self.policy.decide(user_id, risk, watermark, threshold, release)  # may close it
            elif (risk >= threshold and self.policy.can_alert(user_id, watermark)
                  and not self.platform.is_quiet(state.last_ts, watermark)):
                candidates.append((user_id, risk, state, days_inactive))
            if days_inactive < self.rules.churned_days:
                self.scheduler.reschedule(user_id, watermark + int(self.recheck_days * DAY_MS))
            else:  # past "churned": stop checking until the user comes back
                self.scheduler.forget(user_id)
                self.churn.forget(user_id)
                self._clustered_day.pop(user_id, None)
                self.platform.forget(user_id)
        chosen = set(self.budget.take([(u, r) for u, r, _, _ in candidates], watermark, len(self.scheduler)))
        for user_id, risk, state, days_inactive in sorted(candidates, key=lambda c: -c[1]):
            if user_id in chosen and self.policy.decide(user_id, risk, watermark, threshold, release):
                alerts.append(self._alert(state, watermark, risk, days_inactive, avg_ltv, title_of, threshold))
        return alerts

    def _alert(self, state: UserState, now: int, risk: float, days_inactive: float, avg_ltv: float,
               title_of: Callable[[str], str] | None = None, threshold: float | None = None) -> AlertDecision:
        profile = build_profile(state, now, avg_ltv, self.rules)
        factors = self.churn.explain(state, now, top=3, avg_ltv=avg_ltv)
        in_progress = [c for c, e in sorted(state.courses.items(), key=lambda ce: -ce[1][0])
                       if not e[3] and e[1] < self.rules.completion]
        course = in_progress[0] if in_progress else None
        if course is not None and title_of is not None:
            course = title_of(course)
        action = self.policy.suggest_action(churn_features(state, now, avg_ltv), factors, profile.segment,
                                            recent_course=course)
        return AlertDecision(state.user_id, now, round(risk, 4), round(self.threshold if threshold is None else threshold, 4),
                             round(days_inactive, 2),
                             profile.segment, factors, action)

    def word_repurchase(self, items: list[tuple[str, float, str]], state: UserState,
                        now: int) -> list[tuple[str, float, str]]:
        """A list's items with the best one that follows a bought course worded "continue with
        this after …" when the repurchase model expects the user to buy again soon (seed 001:
        repurchase and retention); the same items otherwise."""
        prefix = "because you bought "
        i = next((i for i, item in enumerate(items) if item[2].startswith(prefix)), None)
        if i is None:  # nothing follows a bought course: no model call on this path
            return items
        if self.repurchase.classifier.predict_proba(churn_features(state, now)) < REPURCHASE_REASON_AT:
            return items
        out = list(items)
        course_id, score, reason = out[i]
        out[i] = (course_id, score, "continue with this after " + reason[len(prefix):])
        return out

    def extras(self, state: UserState, now: int, avg_ltv: float = 0.0) -> dict[str, Any]:
        """Model outputs for the user's profile (``extra``)."""
        x = churn_features(state, now, avg_ltv)
        cluster = self.clusters.predict(x)
        return {
            "churn_risk": round(self.churn.risk(state, now, avg_ltv), 4),
            "repurchase_propensity": round(self.repurchase.classifier.predict_proba(x), 4),
            "cluster": cluster,
            "cluster_description": self.clusters.describe(cluster) if cluster >= 0 else "not enough data yet",
        }

    # -- moving with the partition --------------------------------------------------------------

    #: version of :meth:`checkpoint`'s format (1: the constructor arguments were stored too)
    CHECKPOINT_FORMAT = 2

    def checkpoint(self) -> bytes:
        """The learned state only (model weights, clusters, open alert episodes, watermark) as
        bytes, with a format version and the label horizon it was learned for. Parameters
        (thresholds, cool-downs, check ages) are never stored: they come from the settings."""
        return pickle.dumps({
            "format": self.CHECKPOINT_FORMAT,
            "horizon_days": self.horizon_days,
            "churn": self.churn.classifier,
            "repurchase": self.repurchase.classifier,
            "clusters": self.clusters,
            "episodes": self.policy.to_dict()["users"],
            "watermark": self.watermark,
        }, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes, **params: Any) -> RetentionModels:
        """Models configured with ``params`` (the current settings), with ``blob``'s learned state."""
        new = cls(**params)
        new.restore_learned(blob)
        return new

    def restore_learned(self, blob: bytes) -> str:
        """Load a checkpoint's learned state into these models (configured from the current
        settings); return what was done: ``restored``, ``migrated`` (format 1), ``relearning``
        (learned for another horizon: the classifiers start anew, the rest is kept) or
        ``rebuilt`` (unreadable: everything starts anew). Never raises on a bad blob."""
        try:
            data, legacy = unpickle_checkpoint(blob, self.CHECKPOINT_FORMAT)
            if legacy:  # format 1: (horizon, threshold, release, cooldown, ...) first
                horizon, episodes, outcome = data["args"][0], data["policy"]["users"], "migrated"
            else:
                horizon, episodes, outcome = data["horizon_days"], data["episodes"], "restored"
            churn, repurchase, clusters = data["churn"], data["repurchase"], data["clusters"]
            watermark = int(data["watermark"])
        except Exception:  # noqa: BLE001 - a checkpoint we cannot read is rebuilt, never a crash
            log.warning("retention checkpoint unreadable; the models start anew", exc_info=True)
            return "rebuilt"
        if float(horizon) == float(self.horizon_days):
            self.churn.classifier = churn
            churn.shared = self.shared
            self.repurchase.classifier = repurchase
        else:
            outcome = "relearning"
            log.warning("retention checkpoint learned for a %s-day horizon, now %s: churn and repurchase "
                        "models start anew", horizon, self.horizon_days)
        self.clusters = clusters
        self.policy._users = {u: [bool(e[0]), e[1]] for u, e in episodes.items()}  # noqa: SLF001 - same model
        self.watermark = watermark
        return outcome

    def reschedule_all(self, states: Iterable[UserState]) -> int:
        """Schedule silence checks for users recovered with the partition; returns how many."""
        n = 0
        for state in states:
            if state.last_ts and (self.watermark - state.last_ts) < self.rules.churned_days * DAY_MS:
                self.scheduler.touch(state.user_id, state.last_ts)
                n += 1
        return n
