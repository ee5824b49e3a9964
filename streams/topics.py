"""The Faust topics, built from the one registry (``schemas.topics``). Values are raw bytes:
decoding is ours (schemas.codec)."""

from __future__ import annotations

from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, spec
from streams.app import app, settings

__all__ = [
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "churn_alerts",
    "churn_model",
    "course_cooc",
    "course_neighbours",
    "courses",
    "dlq",
    "recommendations",
    "referral_candidates",
    "referral_credits",
    "referral_links",
    "user_events",
    "user_profiles",
]



def _topic(*names: str):  # noqa: ANN202 - faust.TopicT
    """One Faust topic over the registry entries ``names`` (several: one stream over them)."""
    specs = [spec(n) for n in names]
    partitions = {s.partitions or settings.partitions for s in specs}
    if len(partitions) != 1:  # pragma: no cover - the registry co-partitions what is read together
        msg = f"topics read together must have one partition count: {names} have {sorted(partitions)}"
        raise ValueError(msg)
    return app.topic(
        *(settings.topic(n) for n in names),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions.pop(),
        compacting=any(s.compacted for s in specs) or None,
    )


#: one stream over the three user-keyed inputs: a worker owns all of a user's events
user_events = _topic(*INPUT_TOPICS)
courses = _topic("courses")
recommendations = _topic("recommendations")
churn_alerts = _topic("churn-alerts")
referral_candidates = _topic("referral-candidates")
user_profiles = _topic("user-profiles")
dlq = _topic("events-dlq")
#: co-occurrence row updates, keyed (so partitioned) by course_id
course_cooc = _topic("course-cooc")
#: every course's popularity and neighbour list, keyed by course_id; read by every worker
course_neighbours = _topic("course-neighbours")
#: referral links (a share, or a purchase naming a share), keyed (so partitioned) by share_id
referral_links = _topic("referral-links")
#: attribution credits for the sharer, keyed by the sharer's user_id (partitioned like ``users``)
referral_credits = _topic("referral-credits")
#: every partition's churn classifier parameters, keyed by partition; read by every worker
churn_model = _topic("churn-model")
