"""Output topics, read by notification services, the platform's front end and analysts.

Every output record carries its own id (``rec_id``, ``alert_id``, ...) so consumers can
de-duplicate what at-least-once delivery may repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.base import Record, constraint

__all__ = [
    "SEGMENTS",
    "ChurnAlert",
    "DeadLetter",
    "Factor",
    "RecItem",
    "Recommendations",
    "ReferralCandidate",
    "UserProfile",
]

SEGMENTS = ("new", "active", "loyal", "at-risk", "dormant", "churned")


@dataclass(frozen=True, slots=True)
class RecItem(Record):
    """One ranked course."""

    course_id: str = constraint(description="Recommended course.")
    score: float = constraint(description="Ranking score (higher is better).")
    reason: str = constraint(description="Human-readable reason, e.g. 'because you watched X'.")


@dataclass(frozen=True, slots=True)
class Recommendations(Record):
    """Fresh top-N courses for a user after their activity (key ``user_id``)."""

    topic = "recommendations"
    kind = "recommendations"
    rec_id: str = constraint(description="Id of this list; echoed by views/purchases it leads to.")
    user_id: str = constraint(description="The user.")
    items: list[RecItem] = constraint(description="Ranked items, best first.")
    model_versions: dict[str, Any] = constraint(description="Model name -> version that produced the list.")
    generated_at: int = constraint(description="When the list was made (event time, UTC).", timestamp=True)
    event_id: str = constraint(description="The event that triggered this list.")
    schema_version: int = constraint(description="Schema version.", default=1)


@dataclass(frozen=True, slots=True)
class Factor(Record):
    """A feature's contribution to a model's output."""

    name: str = constraint(description="Feature name.")
    value: float = constraint(description="The feature's value for this user.")
    contribution: float = constraint(description="Its contribution to the risk (log-odds).")


@dataclass(frozen=True, slots=True)
class ChurnAlert(Record):
    """A user whose risk of leaving crossed the threshold (key ``user_id``)."""

    topic = "churn-alerts"
    kind = "churn_alert"
    alert_id: str = constraint(description="Id of this alert.")
    user_id: str = constraint(description="The user.")
    risk: float = constraint(description="Estimated probability of churn within the horizon.", ge=0, le=1)
    threshold: float = constraint(description="Threshold the risk crossed.", ge=0, le=1)
    days_inactive: float = constraint(description="Days since the user's last event (event time).", ge=0)
    segment: str = constraint(description="Lifecycle segment.", enum=SEGMENTS)
    factors: list[Factor] = constraint(description="Top contributing factors.")
    action: str = constraint(description="Suggested action.")
    generated_at: int = constraint(description="When the alert was raised (event time, UTC).", timestamp=True)
    schema_version: int = constraint(description="Schema version.", default=1)


@dataclass(frozen=True, slots=True)
class ReferralCandidate(Record):
    """A user likely to bring new buyers (key ``user_id``)."""

    topic = "referral-candidates"
    kind = "referral_candidate"
    candidate_id: str = constraint(description="Id of this message.")
    user_id: str = constraint(description="The user.")
    propensity: float = constraint(description="Probability of bringing a converting invitee.", ge=0, le=1)
    shares: int = constraint(description="Shares so far.", ge=0)
    conversions: int = constraint(description="Attributed converted invitees.", ge=0)
    incentive: str = constraint(description="Suggested incentive tier.")
    generated_at: int = constraint(description="When it was made (event time, UTC).", timestamp=True)
    schema_version: int = constraint(description="Schema version.", default=1)


@dataclass(frozen=True, slots=True)
class UserProfile(Record):
    """A user's activity, loyalty, RFM and lifecycle segment (compacted, key ``user_id``)."""

    topic = "user-profiles"
    kind = "user_profile"
    user_id: str = constraint(description="The user.")
    segment: str = constraint(description="Lifecycle segment.", enum=SEGMENTS)
    activity: float = constraint(description="(sessions + hours watched + purchases + shares) / days of tenure.", ge=0)
    loyalty: float = constraint(description="purchases x spend x hours watched / average lifetime value.", ge=0)
    recency_days: float = constraint(description="Days since the last event, at the partition watermark.", ge=0)
    rfm: str = constraint(description="Recency, frequency, monetary scores 1..5, e.g. '545'.", pattern=r"[1-5]{3}")
    views: int = constraint(description="Views.", ge=0)
    purchases: int = constraint(description="Purchases.", ge=0)
    shares: int = constraint(description="Shares.", ge=0)
    sessions: int = constraint(description="Sessions (events less than 30 minutes apart).", ge=0)
    active_days: int = constraint(description="Distinct days with activity.", ge=0)
    watch_hours: float = constraint(description="Hours watched.", ge=0)
    completed_courses: int = constraint(description="Courses with progress >= the completion threshold.", ge=0)
    spend: float = constraint(description="Total amount spent.", ge=0)
    tenure_days: float = constraint(description="Days from first event to the watermark.", ge=0)
    first_ts: int = constraint(description="First event (UTC).", timestamp=True)
    last_ts: int = constraint(description="Last event (UTC).", timestamp=True)
    recent_courses: list[str] = constraint(description="Most recently touched courses, newest first.")
    updated_at: int = constraint(description="Watermark when this profile was computed (UTC).", timestamp=True)
    extra: dict[str, Any] = constraint(description="Fields added by later models (churn risk, clusters, referrals).", default={})
    schema_version: int = constraint(description="Schema version.", default=1)


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    """A record that could not be processed, kept whole (key: the original key)."""

    topic = "events-dlq"
    kind = "dead_letter"
    source_topic: str = constraint(description="Topic the record came from.")
    partition: int = constraint(description="Its partition.", ge=0)
    offset: int = constraint(description="Its offset.", ge=0)
    error: str = constraint(description="Why it was rejected.")
    error_kind: str = constraint(description="decode | validation | key_mismatch | too_large | wrong_partition | internal.")
    original_b64: str = constraint(description="The original value bytes, base64.")
    failed_at: int = constraint(description="When it was rejected (wall clock, UTC).", timestamp=True)
    key_b64: str | None = constraint(description="The original key bytes, base64.", default=None)
    original_text: str | None = constraint(description="The original value as UTF-8 text when it is text (truncated to 4 KiB).", default=None)
    schema_version: int = constraint(description="Schema version.", default=1)
