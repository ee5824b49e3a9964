"""One step: the work done for a batch of one partition's user events, for every caller.

The ingest agent, ``coursepulse eval`` and the benchmark all call :func:`step`, so what eval
measures is what the worker does. It folds the events into the users' states (de-duplicating),
updates every model of the partition (co-occurrence rises, partition stats, churn and repurchase,
referral propensity), and returns what the batch owes: the states to write, the users owed a
profile and a list (with the event their list is named after), the referral links, candidates and
churn alerts, and whether the partition's stats must be written. It reads and writes no table and
sends nothing: the caller reads the states (the worker through its partition's scope), passes
them in, and writes and publishes the result.

Plain objects only: no Kafka, Faust or Redis import.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.profile import PartitionStats, UserState
from models.recommend import CoocRises, engagement_level
from models.referrals import (
    ReferralDecision,
    ReferralModels,
    incentive_tier,
    link_for,
    mark_candidate,
    record_share,
    referral_stats,
)
from models.retention import AlertDecision, RetentionModels
from schemas.events import Purchase, Share, View

__all__ = ["COUNTERS", "PartitionModels", "RecTrigger", "StepConfig", "StepResult", "UserOutcome", "list_due",
           "list_signature", "step"]

log = logging.getLogger(__name__)

#: the counters a step reports in :attr:`StepResult.counts` (the worker adds them to its metrics)
COUNTERS = ("events_in", "duplicates", "rec_attributed", "referral_candidates", "referral_candidates_reowed")
#: the input topic of each event type (the label of the per-topic counts)
TOPIC_OF = {View: "views", Purchase: "purchases", Share: "shares"}


@dataclass(frozen=True, slots=True)
class StepConfig:
    """The settings a step folds with (the worker's come from ``streams.settings``)."""

    dedupe_window: int = 128
    completion: float = 0.9
    #: watermark = largest event time seen in the partition minus this
    lateness_ms: int = 3_600_000
    #: the partition's stats are written (and its models see the watermark) when its largest
    #: event time moved this far since the last write, and on every purchase
    stats_persist_ms: int = 60_000
    #: a list ranked the same as the last one published (items, order, reasons) is published
    #: again only once the last one is this old in event time; 0: every list ranked is published
    republish_ms: int = 86_400_000


@dataclass(slots=True)
class PartitionModels:
    """What a partition's step reads and changes besides its users' states: kept in memory by
    the caller (the worker's per-partition registry, the evaluator's dict), one per partition."""

    partition: int
    stats: PartitionStats
    retention: RetentionModels
    referrals: ReferralModels
    #: ``stats.max_ts`` when the stats were last written (the step moves it when it owes a write)
    persisted_max: int = 0


@dataclass(frozen=True, slots=True)
class RecTrigger:
    """The event a user's list is ranked for: its id names the list, its time is "now"."""

    partition: int
    event_id: str
    ts: int


@dataclass(slots=True)
class UserOutcome:
    """One user of the batch: the folded state and what it owes."""

    user_id: str
    state: UserState
    #: events applied (not repeats)
    applied: int
    #: whether any event was a repeat (a redelivery: outputs and state are owed again)
    repeated: bool
    #: the user's latest applied event: the list (and profile) owed is for it
    trigger: RecTrigger

    @property
    def write(self) -> bool:
        """Whether the state must be written: something applied, or a repeat (the changelog may
        have lost the write the repeats' first delivery made)."""
        return self.applied > 0 or self.repeated


@dataclass
class StepResult:
    """What a batch of one partition owes. Every user in :attr:`users` is owed a profile and a
    list (ranked at their trigger); co-occurrence rises are in :attr:`rises` (merge them with
    :meth:`CoocRises.merged_updates` once per batch, over every partition)."""

    partition: int
    users: list[UserOutcome] = field(default_factory=list)
    rises: CoocRises | None = None
    #: ``referral-links`` messages (key: ``share_id``), in event order
    links: list[dict[str, Any]] = field(default_factory=list)
    #: referral candidates decided (or re-owed after a redelivery: the same cool-down bucket)
    candidates: list[ReferralDecision] = field(default_factory=list)
    alerts: list[AlertDecision] = field(default_factory=list)
    #: the partition's stats must be written (and the watermark moved to :attr:`watermark`)
    write_stats: bool = False
    watermark: int | None = None
    #: events applied in the partition
    applied: int = 0
    #: ``(counter, label) -> n``: events_in, duplicates, rec_attributed per topic; candidates
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: users whose events raised (a bug): ``(user_id, exception)``; nothing of theirs is owed
    failed: list[tuple[str, Exception]] = field(default_factory=list)
    #: ``(user_id, course_id)`` of every engagement rise, in order
    rose: list[tuple[str, str]] = field(default_factory=list)
    #: every silence check's ``(user_id, at, risk)`` and features (evaluation records them)
    scored: list[tuple[str, int, float]] = field(default_factory=list)
    scored_features: list[dict[str, float]] = field(default_factory=list)
    #: the partition's churn classifier parameters owed to the other partitions (``churn-model``
    #: topic; already in the partition's ``SharedModel``), or None
    churn_params: dict[str, Any] | None = None


def step(events: Sequence[Any], states: Mapping[str, UserState | None], models: PartitionModels,
         config: StepConfig, *, get_state: Callable[[str], UserState | None] | None = None,
         rises: CoocRises | None = None, title_of: Callable[[str], str] | None = None) -> StepResult:
    """Fold a batch of one partition's decoded user events, in arrival order.

    ``states``: the current state of every user of the batch (None or missing: a new user);
    states are changed in place and returned in the result. ``get_state``: reads a user outside
    the batch (a silent user whose check is due when the watermark moves). ``rises``: where the
    co-occurrence rises go (pass one for several partitions to merge them in one kernel call).
    A user whose events raise is reported in :attr:`StepResult.failed`, not raised.
    """
    partition = models.partition
    result = StepResult(partition, rises=rises if rises is not None else CoocRises(completion=config.completion))
    by_user: dict[str, list[Any]] = {}
    for ev in events:
        by_user.setdefault(ev.user_id, []).append(ev)
    for user_id, evs in by_user.items():
        state = states.get(user_id) or UserState(user_id)
        try:
            outcome = _fold_user(state, evs, models, config, result)
        except Exception as exc:  # noqa: BLE001 - a bug on one user's events must not lose the batch
            log.exception("internal error on %d events of user %r", len(evs), user_id)
            result.failed.append((user_id, exc))
            continue
        result.users.append(outcome)
        result.applied += outcome.applied
    if result.write_stats:
        stats = models.stats
        models.persisted_max = stats.max_ts
        watermark = result.watermark = stats.watermark(config.lateness_ms)
        batch_states = {o.user_id: o.state for o in result.users}

        def read(user_id: str) -> UserState | None:
            s = batch_states.get(user_id)
            return s if s is not None or get_state is None else get_state(user_id)

        result.alerts = models.retention.on_watermark(watermark, read, stats.avg_ltv, scored=result.scored,
                                                      title_of=title_of, scored_features=result.scored_features)
        models.referrals.advance(watermark)  # negative referral labels expire
        result.churn_params = models.retention.share_due(partition)
    return result


def _fold_user(state: UserState, evs: list[Any], models: PartitionModels, config: StepConfig,
               result: StepResult) -> UserOutcome:
    """Apply one user's events of the batch to their state and models."""
    partition = models.partition
    stats, churn, referrals = models.stats, models.retention, models.referrals
    rises = result.rises
    assert rises is not None
    counts = result.counts
    completion = config.completion
    applied = 0
    first_repeat_ts: int | None = None
    for ev in evs:
        topic = TOPIC_OF.get(type(ev), type(ev).__name__)
        first_purchase = state.purchases == 0
        is_share = isinstance(ev, Share)
        course_id = getattr(ev, "course_id", None)
        old_level = engagement_level(state.courses.get(course_id), completion) if course_id else 0
        if not state.apply(ev, dedupe_window=config.dedupe_window, completion=completion):
            counts["duplicates", topic] += 1
            if first_repeat_ts is None:
                first_repeat_ts = ev.ts
            continue
        applied += 1
        counts["events_in", topic] += 1
        if getattr(ev, "rec_id", None) is not None:
            counts["rec_attributed", topic] += 1
        if course_id is not None and not is_share:  # views and purchases of a course
            new_level = engagement_level(state.courses.get(course_id), completion)
            if new_level > old_level:
                rises.add(state, course_id, old_level, new_level, ev.ts)
                result.rose.append((state.user_id, course_id))
        state.partition = partition
        # referrals: shares by channel, the propensity model's snapshots, the candidate rule
        if is_share:
            state.referrals = record_share(state.referrals, ev.channel, ev.ts)
        referrals.observe(state, ev.ts)
        if referrals.check_due(state.user_id, ev.ts, force=not isinstance(ev, View)):
            now = max(ev.ts, state.last_ts)
            decision = referrals.decide(state, now)
            if decision is not None:
                state.referrals = mark_candidate(state.referrals, now)
                counts["referral_candidates", decision.incentive.split(":")[0]] += 1
                result.candidates.append(decision)
        link = link_for(ev)
        if link is not None:
            result.links.append(link)
        is_purchase = isinstance(ev, Purchase)
        if (stats.observe(ev.ts, amount=ev.amount if is_purchase else 0.0, new_buyer=is_purchase and first_purchase)
                or is_purchase) and (is_purchase or stats.max_ts - models.persisted_max >= config.stats_persist_ms):
            result.write_stats = True
        churn.observe(state, ev.ts, is_purchase, stats.avg_ltv)
    repeated = first_repeat_ts is not None
    if first_repeat_ts is not None:  # a redelivery re-owes a candidate decided by its events, and the stats write
        _reowe_candidate(state, referrals, first_repeat_ts, result)
        result.write_stats = True
    # the list is owed for the user's latest applied event (a repeat's batch re-owes it): its id
    # names the list, so a redelivery, whatever order its topics interleave in, makes the same one
    last = evs[-1]
    last_id = state.last_event_id
    if last_id is not None and last_id != last.event_id:
        ts = next((ev.ts for ev in evs if ev.event_id == last_id), state.last_ts)
        trigger = RecTrigger(partition, last_id, ts)
    else:
        trigger = RecTrigger(partition, last.event_id, last.ts)
    return UserOutcome(state.user_id, state, applied, repeated, trigger)


def _reowe_candidate(state: UserState, referrals: ReferralModels, since_ts: int, result: StepResult) -> None:
    """The user's candidate decided at or after ``since_ts`` (the first repeated event) may have
    been lost with the crash that caused the redelivery: owe it again, decided at the same time
    (so the same cool-down bucket, the same candidate id)."""
    at = state.referrals.get("candidate_ts")
    if at is None or at < since_ts:
        return
    stats = referral_stats(state.referrals)
    result.candidates.append(
        ReferralDecision(state.user_id, at, round(referrals.propensity(state, at), 4), stats, incentive_tier(stats)))
    result.counts["referral_candidates_reowed", ""] += 1


def list_signature(items: Sequence[tuple[str, float, str]]) -> int:
    """What a consumer of a list sees change: its courses, their order and their reasons (not
    the scores), as 53 bits of BLAKE2b (exact in any JSON reader; never 0, which means none)."""
    text = "\x1e".join(f"{course}\x1f{reason}" for course, _, reason in items)
    return (int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 11) or 1


def list_due(state: UserState, trigger: RecTrigger, items: Sequence[tuple[str, float, str]], config: StepConfig,
             *, force: bool = False) -> bool:
    """Whether the list ranked for ``state`` at ``trigger`` is published; if so it becomes the
    user's last published list (``state.rec_sig``, ``state.rec_at``: written with the state).

    A list with no items is not published, and the next one will be. One with items is
    published when it differs from the last one published, or the last one is
    ``republish_ms`` old (event time), or ``force``: a batch that may be a redelivery (the lost
    first delivery may have published it, or its state write may be what was lost). The worker
    and ``coursepulse eval`` both decide here, so eval publishes what the worker does.
    """
    if not items:  # nothing ranked (the worker ranks it later): whatever comes next is published
        state.rec_sig = 0
        return False
    sig = list_signature(items)
    if not (force or config.republish_ms <= 0 or sig != state.rec_sig
            or trigger.ts - state.rec_at >= config.republish_ms):
        return False
    state.rec_sig, state.rec_at = sig, trigger.ts
    return True
