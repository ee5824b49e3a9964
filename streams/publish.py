"""The output records a step owes and their sends: profiles, lists, churn alerts, referral
candidates and links. Built from the step's result (``models.step``) by the agent that ran it;
no agent imports another for them.

The ``send_*`` functions queue a record in the worker's :data:`outbox` (``streams.outbox``);
the agent that queued it calls ``await outbox.send()`` before its batch ends, which ships the
records as one producer batch per topic partition.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson

from models.profile import PartitionStats, UserState, build_profile
from models.referrals import ReferralDecision, referral_stats
from models.retention import AlertDecision
from schemas.codec import encode
from schemas.outputs import ChurnAlert, Factor, RecItem, Recommendations, ReferralCandidate
from streams import topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.outbox import Outbox, register
from streams.partitions import registry
from streams.runtime import RecTrigger, index, ranker, rules

__all__ = [
    "MODEL_VERSIONS", "alert_record", "attribution_gauges", "candidate_record", "outbox", "profile_value", "ranked_lists",
    "rec_id_for", "rec_record", "rec_value", "send_alert", "send_candidate", "send_link", "send_profile",
    "send_recommendations",
]

log = logging.getLogger(__name__)
_LATENESS_MS = int(settings.allowed_lateness_s * 1000)
MODEL_VERSIONS = {"itemknn": f"{settings.similarity}-k{settings.neighbours_k}", "ranker": "hybrid-1"}
_REC_NS = uuid.UUID("6f1c1f64-5d0e-4b8e-9d4b-0c7e1f1f4a10")
_ALERT_NS = uuid.UUID("0b3a52f5-3c8e-4a43-9a83-5b6f2b9f3c11")
_CANDIDATE_NS = uuid.UUID("6f1d0c9e-2b7a-4c55-9a0e-31c6a8d2e7b4")
#: the worker's output records, queued by the ``send_*`` functions (``streams.outbox``)
outbox = register(Outbox(app, direct=settings.direct_send and settings.processing_guarantee != "exactly_once"))


# -- profiles ----------------------------------------------------------------------------------

def profile_value(state: UserState, partition: int, stats: PartitionStats) -> bytes:
    """The ``user-profiles`` record of ``state`` as of its partition's watermark (JSON bytes).

    Call it with an event of ``partition`` current: the partition's models may be loaded from
    their table on first use.
    """
    now = stats.watermark(_LATENESS_MS)
    pm = registry.models(partition)
    at = max(now, state.last_ts)
    extra = pm.retention.extras(state, at, stats.avg_ltv)
    extra.update({"referrals": referral_stats(state.referrals),
                  "referral_propensity": round(pm.referrals.propensity(state, at), 4)})
    profile = build_profile(state, now, stats.avg_ltv, rules, extra=extra)
    metrics.inc("profiles_published", profile.segment)
    return encode(profile)


def send_profile(user_id: str, value: bytes, partition: int) -> None:
    """Queue one profile for ``user-profiles`` (the user's own partition)."""
    outbox.add(topics.user_profiles, user_id.encode(), value, partition)


# -- recommendations ---------------------------------------------------------------------------

def rec_id_for(user_id: str, event_id: str) -> str:
    """Deterministic: a redelivered trigger makes the same id, so consumers can de-duplicate."""
    return str(uuid.uuid5(_REC_NS, f"{user_id}/{event_id}"))


def rec_value(state: UserState, trigger: RecTrigger) -> bytes | None:
    """The ``recommendations`` record for ``state`` after ``trigger`` (JSON bytes), or None when
    nothing can be ranked (no neighbour index yet, or no candidate)."""
    items = ranked_lists([(state, trigger)])[0]
    return rec_record(state, trigger, items) if items else None


def ranked_lists(owed: list[tuple[UserState, RecTrigger]]) -> list[list[tuple[str, float, str]] | None]:
    """The list of every ``(state, trigger)``, ranked in one kernel call and worded by the
    partition's repurchase model; None where nothing can be ranked (no neighbour index yet)."""
    if index.size == 0:
        return [None] * len(owed)
    ranked = ranker.recommend_many([(state, trigger.ts) for state, trigger in owed], index)
    return [registry.models(trigger.partition).retention.word_repurchase(items, state, trigger.ts) if items else items
            for (state, trigger), items in zip(owed, ranked, strict=True)]


def rec_record(state: UserState, trigger: RecTrigger, items: list[tuple[str, float, str]]) -> bytes:
    """The ``recommendations`` record of a ranked list (JSON bytes)."""
    record = Recommendations(
        rec_id=rec_id_for(state.user_id, trigger.event_id),
        user_id=state.user_id,
        items=[RecItem(course_id=c, score=s, reason=r) for c, s, r in items],
        model_versions=MODEL_VERSIONS,
        generated_at=trigger.ts,
        event_id=trigger.event_id,
    )
    metrics.inc("recommendations_published")
    return encode(record)


def send_recommendations(user_id: str, value: bytes, partition: int) -> None:
    """Queue one list for ``recommendations`` (the user's own partition)."""
    outbox.add(topics.recommendations, user_id.encode(), value, partition)


def attribution_gauges() -> None:
    """Views and purchases that came from a list, per list published."""
    metrics.set("rec_flush_at", time.time())
    published = metrics.get("recommendations_published")
    if published:
        metrics.set("rec_click_through", round(metrics.get("rec_attributed", "views") / published, 6))
        metrics.set("rec_conversion", round(metrics.get("rec_attributed", "purchases") / published, 6))


# -- churn alerts --------------------------------------------------------------------------------

def alert_record(a: AlertDecision) -> ChurnAlert:
    """The message of an alert decision; its id is the same for the same user and time."""
    return ChurnAlert(
        alert_id=str(uuid.uuid5(_ALERT_NS, f"{a.user_id}/{a.at}")),
        user_id=a.user_id,
        risk=a.risk,
        threshold=a.threshold,
        days_inactive=a.days_inactive,
        segment=a.segment,
        factors=[Factor(name=f["name"], value=round(float(f["value"]), 4), contribution=round(float(f["contribution"]), 4))
                 for f in a.factors],
        action=a.action,
        generated_at=a.at,
    )


def send_alert(a: AlertDecision, partition: int) -> None:
    """Queue one churn alert for ``churn-alerts`` (the user's own partition)."""
    outbox.add(topics.churn_alerts, a.user_id.encode(), encode(alert_record(a)), partition)
    metrics.inc("churn_alerts", a.segment)


# -- referrals -----------------------------------------------------------------------------------

def candidate_record(d: ReferralDecision, cooldown_days: float) -> ReferralCandidate:
    """The message of a decision; its id is the same for the same user and cool-down bucket."""
    bucket = d.at // max(1, int(cooldown_days * 86_400_000))
    return ReferralCandidate(candidate_id=str(uuid.uuid5(_CANDIDATE_NS, f"{d.user_id}/{bucket}")), user_id=d.user_id,
                             propensity=d.propensity, shares=d.stats["shares"],
                             conversions=d.stats["converted_invitees"], incentive=d.incentive, generated_at=d.at)


def send_candidate(d: ReferralDecision, partition: int) -> None:
    """Queue one referral candidate for ``referral-candidates`` (the user's own partition)."""
    candidate = candidate_record(d, settings.referral_cooldown_days)
    outbox.add(topics.referral_candidates, candidate.user_id.encode(), encode(candidate), partition)


def send_link(link: dict[str, Any]) -> None:
    """Queue a share or a conversion naming one for ``referral-links``, keyed by its ``share_id``."""
    outbox.add(topics.referral_links, link["share_id"].encode(), orjson.dumps(link))
    metrics.inc("referral_links_sent", link["kind"])
