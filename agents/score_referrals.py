"""Referral credits into the sharer's state; referral propensity; ``referral-candidates``.

``referral-credits`` is keyed by the sharer's user_id, so it is partitioned like the input topics
and the ``users`` table: the agent here updates the sharer's ``UserState.referrals`` (read,
modify, write with no await in between) on the partition that owns the sharer. The ingest agent
calls :func:`on_user_event` just before it writes a user's state (shares by channel, the
propensity model's snapshots, the candidate check), :func:`send_candidates` after, and
:func:`on_watermark` when the partition's watermark moves (negative labels expire).

One :class:`models.referrals.ReferralModels` per partition, checkpointed to ``referral-models``
every ``COURSEPULSE_CHECKPOINT_EVENTS`` events and restored on first use, so it moves with the
partition. A candidate's cool-down is kept in the user's state, so it survives restarts too.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson

from models.profile import UserState
from models.referrals import (
    ReferralDecision,
    ReferralModels,
    incentive_tier,
    mark_candidate,
    record_credit,
    record_share,
    referral_stats,
)
from schemas.codec import encode
from schemas.events import Share, View
from schemas.outputs import ReferralCandidate
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import EveryN, PartitionScope, publish_lock, serving

__all__ = ["candidate_record", "extras", "models_for", "on_user_event", "on_watermark", "score_referrals",
           "reowe_candidate", "send_candidates"]

log = logging.getLogger(__name__)
_NS = uuid.UUID("6f1d0c9e-2b7a-4c55-9a0e-31c6a8d2e7b4")
_models: dict[int, ReferralModels] = {}
_checkpoints = EveryN()
#: candidates decided on the ingest path, sent right after the user's state is written
_outbox: list[tuple[int, ReferralCandidate]] = []


def models_for(partition: int) -> ReferralModels:
    """The partition's referral models, restored from ``referral-models`` on first use."""
    rm = _models.get(partition)
    if rm is None:
        blob = tables.referral_models.get(str(partition))
        rm = ReferralModels(  # every parameter from the current settings
            horizon_days=settings.referral_horizon_days, threshold=settings.referral_threshold,
            cooldown_days=settings.referral_cooldown_days, min_examples=settings.referral_min_examples)
        outcome = rm.restore_learned(blob) if blob else "new"
        _models[partition] = rm
        metrics.inc("model_restores", f"referral:{outcome}")
        log.info("partition %d: referral model %s", partition, outcome)
    return rm


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:  # noqa: ANN001 - faust signal
    """The partition moved away: drop its in-memory model (its table has the checkpoint)."""
    for tp in revoked:
        _models.pop(tp.partition, None)
        _checkpoints.forget(tp.partition)


def _checkpoint(partition: int) -> None:
    """Count an event; write the partition's checkpoint every ``checkpoint_events`` (in a stream)."""
    if not _checkpoints.due(partition, settings.checkpoint_events):
        return
    rm = models_for(partition)
    tables.referral_models[str(partition)] = rm.checkpoint()
    metrics.set("referral_model_examples", rm.positives + rm.negatives, str(partition))
    metrics.set("referral_model_auc", float(rm.metric.get()), str(partition))


def candidate_record(d: ReferralDecision, cooldown_days: float) -> ReferralCandidate:
    """The message of a decision; its id is the same for the same user and cool-down bucket."""
    bucket = d.at // max(1, int(cooldown_days * 86_400_000))
    return ReferralCandidate(candidate_id=str(uuid.uuid5(_NS, f"{d.user_id}/{bucket}")), user_id=d.user_id,
                             propensity=d.propensity, shares=d.stats["shares"],
                             conversions=d.stats["converted_invitees"], incentive=d.incentive, generated_at=d.at)


def _decide(rm: ReferralModels, state: UserState, now: int) -> ReferralCandidate | None:
    d = rm.decide(state, now)
    if d is None:
        return None
    state.referrals = mark_candidate(state.referrals, now)
    metrics.inc("referral_candidates", d.incentive.split(":")[0])
    return candidate_record(d, rm.cooldown_days)


def on_user_event(event: Any, state: UserState, partition: int) -> None:
    """From the ingest agent, after ``state.apply`` and before the state is written, with no await
    in between (so a credit written by :func:`score_referrals` is never overwritten): counts a
    share by channel, lets the model snapshot, and checks the candidate rule (shares and purchases
    always, views once per user-day).
    """
    if isinstance(event, Share):
        state.referrals = record_share(state.referrals, event.channel, event.ts)
    rm = models_for(partition)
    rm.observe(state, event.ts)
    if rm.check_due(state.user_id, event.ts, force=not isinstance(event, View)):
        candidate = _decide(rm, state, max(event.ts, state.last_ts))
        if candidate is not None:
            _outbox.append((partition, candidate))
    _checkpoint(partition)


def reowe_candidate(state: UserState, partition: int, since_ts: int) -> None:
    """A redelivered batch: the user's candidate decided at or after ``since_ts`` (the first
    repeated event) may have been lost with the crash that caused the redelivery; send it again,
    with the id of its cool-down bucket (the same id as the first time)."""
    at = state.referrals.get("candidate_ts")
    if at is None or at < since_ts:
        return
    rm = models_for(partition)
    stats = referral_stats(state.referrals)
    decision = ReferralDecision(state.user_id, at, round(rm.propensity(state, at), 4), stats, incentive_tier(stats))
    metrics.inc("referral_candidates_reowed")
    _outbox.append((partition, candidate_record(decision, rm.cooldown_days)))


async def send_candidates() -> None:
    """From the ingest agent, after the state was written: send the candidates decided."""
    while _outbox:
        partition, candidate = _outbox.pop(0)
        await topics.referral_candidates.send(key=candidate.user_id.encode(), value=encode(candidate),
                                              partition=partition)


def on_watermark(partition: int, watermark: int) -> None:
    """From the ingest agent when the partition's watermark moved: learn the expired negatives."""
    models_for(partition).advance(watermark)


def extras(state: UserState, now: int, partition: int) -> dict[str, Any]:
    """Referral statistics and propensity for the user's profile (``extra``)."""
    return {"referrals": referral_stats(state.referrals),
            "referral_propensity": round(models_for(partition).propensity(state, now), 4)}


@app.agent(topics.referral_credits)
async def score_referrals(stream):  # noqa: ANN001 - faust stream
    """Per credit: update the sharer's referral stats, teach the model, check the candidate rule."""
    from agents.ingest import partition_stats  # noqa: PLC0415 - likewise
    from agents.publish_profiles import profile_value, send_profile  # noqa: PLC0415 - it imports this module

    async for event in stream.events():
        message = event.message
        scope = PartitionScope(event)  # the credit is keyed by the sharer: their partition
        try:
            credit = orjson.loads(message.value)
            sharer = credit["sharer"]
            raw = scope.get(tables.users, sharer)
            state = UserState.from_dict(raw) if raw else UserState(sharer, partition=message.partition)
            state.referrals, applied = record_credit(state.referrals, credit)
            ts = int(credit["ts"])
        except (ValueError, KeyError, TypeError) as exc:  # our own topic: a bug, not input
            log.error("dropping malformed referral credit at offset %d: %s", message.offset, exc)
            metrics.inc("referral_credits_malformed")
            continue
        if not applied:
            metrics.inc("referral_duplicates", "credit")
            continue
        if state.partition not in (-1, message.partition):
            log.warning("credit for %s on partition %d, but the user lives on %d", sharer, message.partition,
                        state.partition)
            metrics.inc("referral_partition_mismatch")
        rm = models_for(message.partition)
        candidate = None
        if credit["credited"]:
            rm.on_credit(state, ts)
            candidate = _decide(rm, state, max(ts, state.last_ts))
        scope.put(tables.users, sharer, state.to_dict())
        metrics.inc("referral_credits_applied", "credited" if credit["credited"] else "outside_window")
        _checkpoint(message.partition)
        if candidate is not None:
            await topics.referral_candidates.send(key=sharer.encode(), value=encode(candidate),
                                                  partition=message.partition)
        # the sharer's profile changed: publish it before this credit is acknowledged
        async with publish_lock:  # Redis in the order of Kafka (the ingest batch publishes too)
            scope.enter()
            value = profile_value(state, message.partition, partition_stats(message.partition))
            await send_profile(sharer, value, message.partition)
            await serving.put_many("profile", [(sharer, value)])
