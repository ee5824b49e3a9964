"""Referrals: who brought whom, per-user referral statistics, incentive tiers, referral propensity.

Plain objects and functions, no Kafka: the live agents (``agents/attribute_referrals.py``,
``agents/score_referrals.py``), offline replay and evaluation run this code. Every time is event
time in epoch milliseconds.

Three parts:

- **Attribution** (:class:`AttributionBook`), keyed by ``share_id``: a share and the purchases that
  name it meet here, whatever the order they come in. A purchase made within ``window_days`` of
  its share (share ts -> purchase ts) is credited to the sharer; a purchase naming an unknown
  share waits (bounded) for the share; one outside the window is counted and passed on uncredited.
  Purchases are de-duplicated by ``event_id``.
- **Per-user statistics** in ``UserState.referrals``, changed only through :func:`record_share`,
  :func:`record_credit` and :func:`mark_candidate` (each returns a new dict, the input is left
  alone); :func:`referral_stats` is their public summary and :func:`incentive_tier` the rule that
  turns it into a suggested incentive.
- **Propensity** (:class:`ReferralModels`): an online classifier of "brings a converting invitee
  within ``horizon_days``", with delayed labels (positive when a credited conversion comes in
  time, negative at expiry), and the candidate rule (threshold, cool-down).

>>> ref = record_share({}, "wechat_group", 1_000)
>>> ref, applied = record_credit(ref, {"invitee": "u2", "amount": 99.0, "ts": 2_000, "event_id": "e1",
...                                    "credited": True})
>>> referral_stats(ref)["converted_invitees"], incentive_tier(referral_stats(ref))
(1, 'silver: free month per converted invitee')
"""

from __future__ import annotations

import logging
import math
import pickle
from array import array
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from river import metrics

from models.checkpoint import unpickle_checkpoint
from models.churn import DelayedLabels, OnlineClassifier, churn_features, clone
from models.profile import DAY_MS, UserState
from schemas.events import SHARE_CHANNELS, Purchase, Share

__all__ = [
    "REFERRAL_FEATURES",
    "REFERRAL_PRIOR",
    "REFERRAL_PRIOR_INTERCEPT",
    "SILENCE_FEATURES",
    "TIERS",
    "Attribution",
    "AttributionBook",
    "ReferralDecision",
    "ReferralModels",
    "course_stats_add",
    "incentive_tier",
    "link_for",
    "mark_candidate",
    "record_credit",
    "record_share",
    "referral_features",
    "referral_prior",
    "referral_stats",
]

log = logging.getLogger(__name__)

#: half-life of the decayed share rate kept per user
SHARE_RATE_HL_DAYS = 14.0
#: caps of the day-valued features
_DAYS_CAP = 90.0
#: bounded memories per user (distinct invitees, credit event ids) and per share
MAX_INVITEES = 1000
MAX_CREDIT_IDS = 256
#: labels over which ReferralModels' calibration check averages
_CALIBRATION_SPAN = 1000
#: positive labels a model must have learned before it may publish candidates
_MIN_POSITIVES = 10

#: incentive tiers, best first: (name, offer, converted invitees needed)
TIERS: tuple[tuple[str, str, int], ...] = (
    ("gold", "revenue share on referred purchases", 3),
    ("silver", "free month per converted invitee", 1),
    ("bronze", "coupon to share", 0),
)

#: engagement features of :func:`models.churn.churn_features` left out: snapshots are taken at
#: activity, so the model never sees a silence and a silent user's recency would be extrapolated
SILENCE_FEATURES = frozenset({"recency_days", "recency_log", "silence_ratio"})

#: every feature of :func:`referral_features` beyond :func:`models.churn.churn_features`
REFERRAL_FEATURES: dict[str, str] = {
    "ref_share_rate": f"log1p of shares decayed with a {SHARE_RATE_HL_DAYS:g}-day half-life",
    "ref_days_since_share": f"days since the last share, capped at {_DAYS_CAP:g} (the cap when never)",
    "ref_channels": "distinct channels shared to",
    "ref_invitees_log": "log1p of distinct invitees seen buying through the user's shares",
    "ref_converted_log": "log1p of distinct invitees credited (bought within the window)",
    "ref_conversions_log": "log1p of credited purchases",
    "ref_conversion_rate": "converted invitees / (shares + 1)",
    "ref_revenue_log": "log1p of the revenue of credited purchases",
    "ref_days_since_conversion": f"days since the last credited purchase, capped at {_DAYS_CAP:g}",
    "repeat_buyer": "1 with two purchases or more, else 0",
    "spend_log": "log1p of total spend",
    "was_referred": "1 when the user came through someone's share, else 0",
    **{f"ch_{c}": f"share of the user's shares sent to {c}" for c in SHARE_CHANNELS},
}


# -- links: what the ingest path sends to ``referral-links`` ------------------------------------


def link_for(event: Any) -> dict[str, Any] | None:
    """The ``referral-links`` message of an input event (key: its ``share_id``), or None.

    A share -> ``{kind: "share", share_id, sharer, course_id, channel, ts}``; a purchase carrying a
    ``share_id`` -> ``{kind: "conversion", share_id, invitee, amount, course_id, ts, event_id}``.
    """
    if isinstance(event, Share):
        return {"kind": "share", "share_id": event.share_id, "sharer": event.user_id,
                "course_id": event.course_id, "channel": event.channel, "ts": event.ts}
    if isinstance(event, Purchase) and event.share_id is not None:
        return {"kind": "conversion", "share_id": event.share_id, "invitee": event.user_id,
                "amount": float(event.amount), "course_id": event.course_id or event.plan,
                "ts": event.ts, "event_id": event.event_id}
    return None


# -- attribution ---------------------------------------------------------------------------------


@dataclass
class Attribution:
    """What one link did in the book (the caller turns it into metrics and messages)."""

    share_id: str
    kind: str
    #: the share's course when the share is known
    course_id: str | None = None
    new_share: bool = False
    duplicate: bool = False
    #: a conversion whose share is not known (yet): kept pending
    unknown: bool = False
    #: a conversion by the sharer themself: counted, never credited
    self_referral: bool = False
    credited: int = 0
    credited_revenue: float = 0.0
    outside_window: int = 0
    #: pending conversions dropped because too many waited on one unknown share
    dropped: int = 0
    #: messages for ``referral-credits`` (key: ``sharer``); ``credited`` False when outside the window
    credits: list[dict[str, Any]] = field(default_factory=list)


def _need(link: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = link.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        msg = f"referral link {name!r}: expected {kind}, got {value!r}"
        raise ValueError(msg)
    return value


class AttributionBook:
    """Shares by id and the conversions naming them, in any ``store`` mapping (a Faust table live).

    An entry per ``share_id``: the share (sharer, course, channel, ts; None until it arrives),
    the conversion event ids seen (de-duplication, bounded by ``max_ids``), conversions waiting
    for an unknown share (bounded by ``max_pending``; beyond, the oldest is dropped and counted),
    and the credited totals. Entries are replaced, never mutated in place, so a store that hands
    out its own objects stays consistent.
    """

    def __init__(self, store: MutableMapping[str, Any] | None = None, window_days: float = 30.0,
                 max_ids: int = 256, max_pending: int = 64) -> None:
        if not (isinstance(window_days, int | float) and 0 < window_days < 10_000):
            msg = f"window_days must be a number in (0, 10000), got {window_days!r}"
            raise ValueError(msg)
        for name, value in (("max_ids", max_ids), ("max_pending", max_pending)):
            if not (isinstance(value, int) and value >= 1):
                msg = f"{name} must be an int >= 1, got {value!r}"
                raise ValueError(msg)
        self.store = {} if store is None else store
        self.window_days = window_days
        self.max_ids = max_ids
        self.max_pending = max_pending
        self.window_ms = int(window_days * DAY_MS)

    def within(self, share_ts: int, purchase_ts: int) -> bool:
        """Whether a purchase at ``purchase_ts`` is within the window of a share at ``share_ts``."""
        return 0 <= purchase_ts - share_ts <= self.window_ms

    def apply(self, link: Mapping[str, Any]) -> Attribution:
        """Fold one ``referral-links`` message in; malformed ones raise ValueError."""
        kind = link.get("kind")
        if kind == "share":
            return self.share(link)
        if kind == "conversion":
            return self.conversion(link)
        msg = f"referral link 'kind': expected 'share' or 'conversion', got {kind!r}"
        raise ValueError(msg)

    def _entry(self, share_id: str) -> dict[str, Any]:
        old = self.store.get(share_id)
        if old is None:
            return {"sharer": None, "course_id": None, "channel": None, "ts": None, "ids": [],
                    "pending": [], "conversions": 0, "revenue": 0.0, "outside": 0}
        return {**old, "ids": list(old["ids"]), "pending": list(old["pending"])}

    def share(self, link: Mapping[str, Any]) -> Attribution:
        """A share arrived: remember it; credit the conversions that were waiting for it."""
        share_id = _need(link, "share_id", str)
        sharer = _need(link, "sharer", str)
        ts = _need(link, "ts", int)
        entry = self._entry(share_id)
        out = Attribution(share_id, "share", course_id=entry["course_id"])
        if entry["sharer"] is not None:
            out.duplicate = True
            return out
        entry.update(sharer=sharer, course_id=_need(link, "course_id", str),
                     channel=_need(link, "channel", str), ts=ts)
        out.course_id, out.new_share = entry["course_id"], True
        pending, entry["pending"] = entry["pending"], []
        for conv in pending:
            self._settle(entry, conv, out)
        self.store[share_id] = entry
        return out

    def conversion(self, link: Mapping[str, Any]) -> Attribution:
        """A purchase naming a share: credit it, keep it pending, or count it outside the window."""
        share_id = _need(link, "share_id", str)
        conv = {"invitee": _need(link, "invitee", str), "amount": float(_need(link, "amount", int | float)),
                "course_id": link.get("course_id"), "ts": _need(link, "ts", int),
                "event_id": _need(link, "event_id", str)}
        entry = self._entry(share_id)
        out = Attribution(share_id, "conversion", course_id=entry["course_id"])
        if conv["event_id"] in entry["ids"]:
            out.duplicate = True
            return out
        entry["ids"].append(conv["event_id"])
        if len(entry["ids"]) > self.max_ids:
            del entry["ids"][: len(entry["ids"]) - self.max_ids]
        if entry["sharer"] is None:
            out.unknown = True
            entry["pending"].append(conv)
            if len(entry["pending"]) > self.max_pending:
                out.dropped = len(entry["pending"]) - self.max_pending
                del entry["pending"][: out.dropped]
        else:
            self._settle(entry, conv, out)
        self.store[share_id] = entry
        return out

    def _settle(self, entry: dict[str, Any], conv: dict[str, Any], out: Attribution) -> None:
        if conv["invitee"] == entry["sharer"]:
            out.self_referral = True
            return
        credited = self.within(entry["ts"], conv["ts"])
        if credited:
            entry["conversions"] += 1
            entry["revenue"] += conv["amount"]
            out.credited += 1
            out.credited_revenue += conv["amount"]
        else:
            entry["outside"] += 1
            out.outside_window += 1
        out.credits.append({"sharer": entry["sharer"], "share_id": out.share_id, **conv, "credited": credited})


def course_stats_add(entry: Mapping[str, Any] | None, shares: int = 0, conversions: int = 0,
                     revenue: float = 0.0) -> dict[str, Any]:
    """A course's referral totals plus these increments (a new dict).

    >>> course_stats_add(course_stats_add(None, shares=2), conversions=1, revenue=90.0)
    {'shares': 2, 'conversions': 1, 'revenue': 90.0}
    """
    old = entry or {}
    return {"shares": old.get("shares", 0) + shares, "conversions": old.get("conversions", 0) + conversions,
            "revenue": round(old.get("revenue", 0.0) + revenue, 2)}


# -- per-user statistics (UserState.referrals) ---------------------------------------------------


def _decayed(value: float, since: int, now: int) -> float:
    return value * 2.0 ** (-max(0, now - since) / (SHARE_RATE_HL_DAYS * DAY_MS)) if value else 0.0


def record_share(ref: Mapping[str, Any], channel: str, ts: int) -> dict[str, Any]:
    """``ref`` with one more share to ``channel`` at ``ts`` (a new dict; ``ref`` is unchanged)."""
    new = dict(ref)
    by_channel = dict(ref.get("by_channel", {}))
    by_channel[channel] = by_channel.get(channel, 0) + 1
    new["by_channel"] = by_channel
    rate, rate_ts = ref.get("share_rate", 0.0), ref.get("rate_ts", 0)
    if ts >= rate_ts:
        new["share_rate"], new["rate_ts"] = _decayed(rate, rate_ts, ts) + 1.0, ts
    else:  # a late share: add it decayed to the reference time
        new["share_rate"] = rate + _decayed(1.0, ts, rate_ts)
    new["last_share_ts"] = max(ref.get("last_share_ts", 0), ts)
    return new


def record_credit(ref: Mapping[str, Any], credit: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``ref`` with a ``referral-credits`` message applied; ``(ref, False)`` for a repeat.

    ``credit`` needs ``invitee``, ``amount``, ``ts``, ``event_id`` and ``credited`` (False: the
    purchase came outside the attribution window; the invitee counts, the conversion does not).
    """
    ids = ref.get("credit_ids", [])
    if credit["event_id"] in ids:
        return dict(ref), False
    new = dict(ref)
    new["credit_ids"] = [*ids, credit["event_id"]][-MAX_CREDIT_IDS:]
    invitees = dict(ref.get("invitees", {}))
    invitee = credit["invitee"]
    was = invitees.get(invitee)
    converted = 1 if credit["credited"] else 0
    if was is None:
        new["n_invitees"] = ref.get("n_invitees", 0) + 1
    if converted and not was:
        new["n_converted"] = ref.get("n_converted", 0) + 1
    invitees.pop(invitee, None)  # newest last, so the bound drops the oldest
    invitees[invitee] = max(was or 0, converted)
    if len(invitees) > MAX_INVITEES:
        del invitees[next(iter(invitees))]
    new["invitees"] = invitees
    if converted:
        new["conversions"] = ref.get("conversions", 0) + 1
        new["revenue"] = round(ref.get("revenue", 0.0) + float(credit["amount"]), 2)
        new["last_conversion_ts"] = max(ref.get("last_conversion_ts", 0), int(credit["ts"]))
    else:
        new["late"] = ref.get("late", 0) + 1
    return new, True


def mark_candidate(ref: Mapping[str, Any], at: int) -> dict[str, Any]:
    """``ref`` noting that a referral candidate was published at ``at`` (starts the cool-down)."""
    return {**ref, "candidate_ts": at}


def referral_stats(ref: Mapping[str, Any]) -> dict[str, Any]:
    """The public summary: shares (by channel), invitees, converted invitees, rate, revenue."""
    by_channel = dict(ref.get("by_channel", {}))
    shares = sum(by_channel.values())
    converted = ref.get("n_converted", 0)
    return {
        "shares": shares,
        "shares_by_channel": by_channel,
        "invitees": ref.get("n_invitees", 0),
        "converted_invitees": converted,
        "conversions": ref.get("conversions", 0),
        "late_conversions": ref.get("late", 0),
        "conversion_rate": round(converted / shares, 4) if shares else 0.0,
        "revenue": round(ref.get("revenue", 0.0), 2),
    }


def incentive_tier(stats: Mapping[str, Any], gold_invitees: int = 3, silver_invitees: int = 1) -> str:
    """The suggested incentive: gold for proven referrers, silver after a first conversion, else bronze.

    >>> incentive_tier({"converted_invitees": 4})
    'gold: revenue share on referred purchases'
    >>> incentive_tier({"converted_invitees": 0})
    'bronze: coupon to share'
    """
    if not (isinstance(silver_invitees, int) and isinstance(gold_invitees, int) and 1 <= silver_invitees <= gold_invitees):
        msg = f"need integers 1 <= silver_invitees <= gold_invitees, got {silver_invitees!r}, {gold_invitees!r}"
        raise ValueError(msg)
    converted = stats.get("converted_invitees", 0)
    (gold, gold_offer, _), (silver, silver_offer, _), (bronze, bronze_offer, _) = TIERS
    if converted >= gold_invitees:
        return f"{gold}: {gold_offer}"
    if converted >= silver_invitees:
        return f"{silver}: {silver_offer}"
    return f"{bronze}: {bronze_offer}"


def referral_features(state: UserState, now: int) -> dict[str, float]:
    """Engagement (:func:`models.churn.churn_features` without the partition's LTV and without
    :data:`SILENCE_FEATURES`) plus the satisfaction and sharing features of
    :data:`REFERRAL_FEATURES`, as of ``now``; finite floats. Does not modify ``state``.
    """
    x = {k: v for k, v in churn_features(state, now, 0.0).items() if k not in SILENCE_FEATURES}
    ref = state.referrals
    by_channel = ref.get("by_channel", {})
    shares = sum(by_channel.values())
    last_share, last_conv = ref.get("last_share_ts", 0), ref.get("last_conversion_ts", 0)
    x.update({
        "ref_share_rate": math.log1p(_decayed(ref.get("share_rate", 0.0), ref.get("rate_ts", 0), now)),
        "ref_days_since_share": min(_DAYS_CAP, max(0.0, (now - last_share) / DAY_MS)) if last_share else _DAYS_CAP,
        "ref_channels": float(len(by_channel)),
        "ref_invitees_log": math.log1p(ref.get("n_invitees", 0)),
        "ref_converted_log": math.log1p(ref.get("n_converted", 0)),
        "ref_conversions_log": math.log1p(ref.get("conversions", 0)),
        "ref_conversion_rate": ref.get("n_converted", 0) / (shares + 1),
        "ref_revenue_log": math.log1p(max(0.0, ref.get("revenue", 0.0))),
        "ref_days_since_conversion": min(_DAYS_CAP, max(0.0, (now - last_conv) / DAY_MS)) if last_conv else _DAYS_CAP,
        "repeat_buyer": 1.0 if state.purchases >= 2 else 0.0,
        "spend_log": math.log1p(max(0.0, state.spend)),
        "was_referred": 1.0 if state.referred_by else 0.0,
    })
    for c in SHARE_CHANNELS:
        x[f"ch_{c}"] = by_channel.get(c, 0) / shares if shares else 0.0
    return {k: float(v) if math.isfinite(v) else 0.0 for k, v in x.items()}


_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared_names(x: dict[str, float]) -> tuple[str, ...]:
    """The feature names of ``x`` as one tuple shared by every snapshot with the same names."""
    names = tuple(x)
    return _NAMES.setdefault(names, names)


# -- propensity ----------------------------------------------------------------------------------

#: the hand-set logistic prior every partition's model starts from (:func:`referral_prior`):
#: log-odds per unit of a :func:`referral_features` feature. Converted invitees and a recent,
#: frequent sharing habit raise it; a user who has not shared for weeks falls back towards zero.
#: Set so that a user sharing lately with one converted invitee crosses the default threshold
#: (0.3) and sharing alone, however often, does not.
REFERRAL_PRIOR: dict[str, float] = {
    "ref_converted_log": 1.6,
    "ref_share_rate": 0.9,
    "ref_conversion_rate": 2.0,
    "ref_days_since_share": -0.03,
}
#: the prior's log-odds of a user with every :data:`REFERRAL_PRIOR` feature at zero
REFERRAL_PRIOR_INTERCEPT = -3.2


def referral_prior(x: Mapping[str, float]) -> float:
    """The prior propensity of features ``x`` (:data:`REFERRAL_PRIOR`; missing features count 0).

    >>> round(referral_prior({"ref_days_since_share": 90.0}), 4)
    0.0027
    >>> referral_prior({"ref_converted_log": math.log1p(1), "ref_share_rate": 1.1,
    ...                 "ref_conversion_rate": 0.25, "ref_days_since_share": 2.0}) > 0.3
    True
    """
    z = REFERRAL_PRIOR_INTERCEPT + sum(w * float(x.get(k, 0.0)) for k, w in REFERRAL_PRIOR.items())
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))



def _logit(p: float) -> float:
    p = min(1.0 - 1e-6, max(1e-6, p))
    return math.log(p / (1.0 - p))


@dataclass(frozen=True, slots=True)
class ReferralDecision:
    """A referral candidate to publish."""

    user_id: str
    at: int
    propensity: float
    stats: dict[str, Any]
    incentive: str


class ReferralModels:
    """Referral propensity of one partition's users, and the candidate rule.

    Label of a snapshot taken at ``t0`` (one pending per user, taken at their first event without
    one and again right after each credit):
    True when a credited conversion of one of the user's invitees, made in
    ``[t0, t0 + horizon_days)``, reaches :meth:`on_credit`; False when the watermark passes
    ``t0 + horizon_days`` first (:meth:`advance`). The prediction made at ``t0`` is kept with the
    snapshot and scored against the label (``metric``, exact ROC AUC over the last 1000 labels:
    prequential, delayed labels). Snapshots are taken at the user's events and credits, so the
    model never sees a silence: the features leave silence out (:data:`SILENCE_FEATURES`) and
    only decay with it (decayed watch time and share rate, days since the last share).
    ``lr`` defaults lower than the churn model's: positives are rare (~2 % of labels on the
    simulator) and a larger step makes the SGD weights swing with each one.

    The classifier's intercept starts at the log-odds of ``prior`` (the expected share of
    positive labels), not at p = 0.5: SGD would take thousands of labels to get there.

    A candidate (:meth:`decide`) needs a model that has proven itself (:attr:`ready`:
    ``min_examples`` labels of which at least 10 positive, a rolling prequential ROC AUC of at
    least ``min_auc`` on its own labels, and calibrated in the large — the mean of the recent
    snapshot predictions at most three times the recent positive rate plus 0.01; a young model
    with an unsettled scaler gives extreme probabilities to whoever looks unusual), a propensity
    at or above ``threshold``, and no candidate for the user in the last
    ``cooldown_days`` (read from ``state.referrals``; the caller records it with
    :func:`mark_candidate`, so it lives and moves with the user's state).

    **Prior** (``prior_examples`` > 0, the default): until the partition's model is :attr:`ready`,
    :meth:`propensity` and :meth:`decide` use the hand-set logistic prior of :func:`referral_prior`
    alone, the same on every partition, so a fresh partition (a small platform, the first minutes
    of a deployment) publishes candidates before it has learned any label of its own; once ready,
    the learned probability is blended with the prior as if the prior were ``prior_examples``
    labels, ``(n * learned + prior_examples * prior) / (n + prior_examples)`` with ``n`` the labels
    learned, so the partition's own labels take over as they accumulate. ``prior_examples=0``
    restores the old behaviour (no candidate before the model is ready). The prior is a parameter,
    not learned state: checkpoints are unchanged and old ones restore as before.
    """

    def __init__(self, horizon_days: float = 14.0, threshold: float = 0.3, cooldown_days: float = 7.0,
                 min_examples: int = 200, prior: float = 0.02, min_auc: float = 0.7, l2: float = 0.0,
                 lr: float = 0.005, model: str = "logreg", seed: int = 0, prior_examples: int = 200) -> None:
        if not (isinstance(horizon_days, int | float) and 0 < horizon_days < 10_000):
            msg = f"horizon_days must be a number in (0, 10000), got {horizon_days!r}"
            raise ValueError(msg)
        if not (isinstance(threshold, int | float) and 0 < threshold < 1):
            msg = f"threshold must be in (0, 1), got {threshold!r}"
            raise ValueError(msg)
        if not (isinstance(cooldown_days, int | float) and 0 <= cooldown_days < 10_000):
            msg = f"cooldown_days must be a number in [0, 10000), got {cooldown_days!r}"
            raise ValueError(msg)
        if not (isinstance(min_examples, int) and min_examples >= 0):
            msg = f"min_examples must be an int >= 0, got {min_examples!r}"
            raise ValueError(msg)
        if not (isinstance(prior, int | float) and 0 < prior < 1):
            msg = f"prior must be in (0, 1), got {prior!r}"
            raise ValueError(msg)
        if not (isinstance(min_auc, int | float) and 0 <= min_auc < 1):
            msg = f"min_auc must be in [0, 1), got {min_auc!r}"
            raise ValueError(msg)
        if not (isinstance(prior_examples, int) and prior_examples >= 0):
            msg = f"prior_examples must be an int >= 0, got {prior_examples!r}"
            raise ValueError(msg)
        self.horizon_days = horizon_days
        self.prior_examples = prior_examples
        self.threshold = threshold
        self.cooldown_days = cooldown_days
        self.min_examples = min_examples
        self.prior = prior
        self.min_auc = min_auc
        self.l2 = l2
        self.lr = lr
        self.model = model
        self.seed = seed
        # start at the prior's log-odds, not at p = 0.5: with rare positives the SGD intercept
        # would need thousands of labels to get there, more than one partition sees for weeks
        self.classifier = OnlineClassifier(l2=l2, lr=lr, model=model, seed=seed, intercept_init=_logit(prior))
        self.labels = DelayedLabels(horizon_ms=int(horizon_days * DAY_MS), min_interval_ms=0, label_on_expiry=False)
        #: exact ROC AUC of the predictions made at snapshot time, over the last labels resolved
        self.metric = metrics.RollingROCAUC(window_size=1000)
        self.positives = 0
        self.negatives = 0
        #: moving means over about the last ``_CALIBRATION_SPAN`` snapshot predictions (as they
        #: are made) and labels (as they resolve), for :attr:`ready`
        self.mean_prediction = 0.0
        self.mean_label = 0.0
        self.snapshots = 0
        self.watermark = 0
        self._checked_day: dict[str, int] = {}

    def clone(self) -> ReferralModels:
        return clone(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a model pickled whole before the prior existed loads without one, as it was
        state.setdefault("prior_examples", 0)
        self.__dict__.update(state)

    @property
    def cooldown_ms(self) -> int:
        return int(self.cooldown_days * DAY_MS)

    @property
    def ready(self) -> bool:
        """Whether the model has learned enough, ranks well enough and is calibrated enough to
        publish candidates (see the class doc)."""
        return (self.positives + self.negatives >= self.min_examples and self.positives >= _MIN_POSITIVES
                and self.negatives > 0 and float(self.metric.get()) >= self.min_auc
                and self.mean_prediction <= 3.0 * self.mean_label + 0.01)

    @property
    def source(self) -> str:
        """What :meth:`propensity` rests on: ``model`` (ready, blended with the prior when there is
        one), ``prior`` (not ready, with a prior) or ``unready`` (neither: no candidates)."""
        if self.ready:
            return "model"
        return "prior" if self.prior_examples else "unready"

    def propensity(self, state: UserState, now: int) -> float:
        """Probability that the user brings a converting invitee within ``horizon_days`` of ``now``
        (the prior alone before the model is ready, see the class doc)."""
        x = referral_features(state, now)
        source = self.source
        if source == "prior":
            return referral_prior(x)
        learned = self.classifier.predict_proba(x)
        if source == "unready" or not self.prior_examples:
            return learned
        n, n0 = self.positives + self.negatives, self.prior_examples
        return (n * learned + n0 * referral_prior(x)) / (n + n0)

    def observe(self, state: UserState, ts: int) -> bool:
        """After one of the user's events (state applied): snapshot unless one is pending."""
        if state.user_id in self.labels:
            return False
        t0 = max(ts, state.last_ts)
        x = referral_features(state, t0)
        p = self.classifier.predict_proba(x)
        self.snapshots += 1
        self.mean_prediction += max(1.0 / _CALIBRATION_SPAN, 1.0 / self.snapshots) * (p - self.mean_prediction)
        # one snapshot per user is pending: its values as doubles (8 bytes, not a float object
        # and a dict slot each), the names shared by every snapshot with the same features
        return self.labels.snapshot(state.user_id, (_shared_names(x), array("d", list(x.values())), p), t0)

    def on_credit(self, state: UserState, ts: int) -> int:
        """A credited conversion (purchase at ``ts``) of the user's invitee: resolve, re-snapshot."""
        learned = sum(self._learn(p, y, ts) for p, y in self.labels.on_activity(state.user_id, ts, True))
        self.observe(state, ts)
        return learned

    def advance(self, watermark: int) -> int:
        """Learn the negatives of the snapshots that expired by ``watermark``."""
        if watermark <= self.watermark:
            return 0
        self.watermark = watermark
        return sum(self._learn(p, y, watermark) for p, y, _ in self.labels.advance(watermark))

    def _learn(self, payload: tuple[tuple[str, ...], array, float], label: bool, t: int) -> int:
        names, values, pred = payload
        x = dict(zip(names, values, strict=True))
        self.metric.update(label, pred)
        self.classifier.learn(x, label, t=t)
        if label:
            self.positives += 1
        else:
            self.negatives += 1
        a = max(1.0 / _CALIBRATION_SPAN, 1.0 / (self.positives + self.negatives))
        self.mean_label += a * (float(label) - self.mean_label)
        return 1

    def check_due(self, user_id: str, ts: int, force: bool = False) -> bool:
        """Whether to run :meth:`decide` now: always when ``force``, else once per user-day."""
        day = ts // DAY_MS
        if not force and self._checked_day.get(user_id) == day:
            return False
        self._checked_day[user_id] = day
        return True

    def decide(self, state: UserState, now: int) -> ReferralDecision | None:
        """A candidate when the model is ready, the propensity reaches the threshold and the
        user's cool-down is over; else None. Before the model is ready the prior decides (when
        ``prior_examples`` > 0). Does not change ``state``."""
        if self.source == "unready":
            return None
        last = state.referrals.get("candidate_ts")
        if last is not None and now - last < self.cooldown_ms:
            return None
        p = self.propensity(state, now)
        if p < self.threshold:
            return None
        stats = referral_stats(state.referrals)
        return ReferralDecision(state.user_id, now, round(p, 4), stats, incentive_tier(stats))

    #: version of :meth:`checkpoint`'s format (1: the constructor arguments were stored too)
    CHECKPOINT_FORMAT = 2

    def checkpoint(self) -> bytes:
        """The learned state only (classifier, metric, label counts, watermark) as bytes, with a
        format version and the horizon it was learned for; parameters come from the settings."""
        return pickle.dumps({
            "format": self.CHECKPOINT_FORMAT, "horizon_days": self.horizon_days, "model": self.model,
            "classifier": self.classifier, "metric": self.metric, "positives": self.positives,
            "negatives": self.negatives, "means": (self.mean_prediction, self.mean_label, self.snapshots),
            "watermark": self.watermark,
        }, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes, **params: Any) -> ReferralModels:
        """A model configured with ``params`` (the current settings) with ``blob``'s learned state;
        pending snapshots start empty (users re-snapshot)."""
        new = cls(**params)
        new.restore_learned(blob)
        return new

    def restore_learned(self, blob: bytes) -> str:
        """Load a checkpoint's learned state; return ``restored``, ``migrated`` (format 1),
        ``relearning`` (another horizon or model kind: the classifier starts anew) or ``rebuilt``
        (unreadable). Never raises on a bad blob."""
        try:
            data, legacy = unpickle_checkpoint(blob, self.CHECKPOINT_FORMAT)
            if legacy:  # format 1: (horizon, threshold, cooldown, min_examples, prior, ...)
                horizon, model, outcome = data["args"][0], data["args"][8], "migrated"
            else:
                horizon, model, outcome = data["horizon_days"], data["model"], "restored"
            learned = (data["classifier"], data["metric"], data["positives"], data["negatives"],
                       data["watermark"], tuple(data["means"]))
        except Exception:  # noqa: BLE001 - a checkpoint we cannot read is rebuilt, never a crash
            log.warning("referral checkpoint unreadable; the model starts anew", exc_info=True)
            return "rebuilt"
        self.watermark = learned[4]
        if float(horizon) != float(self.horizon_days) or model != self.model:
            log.warning("referral checkpoint learned for horizon %s / model %s, now %s / %s: it starts anew",
                        horizon, model, self.horizon_days, self.model)
            return "relearning"
        self.classifier, self.metric, self.positives, self.negatives = learned[:4]
        self.mean_prediction, self.mean_label, self.snapshots = learned[5]
        return outcome
