"""The one registry of topics: name, key, record type, compaction, role and partition count.

Everything that names a topic reads it from here: the Faust topics (``streams.topics``), topic
creation (``streams.admin``), the JSON Schema documents (``coursepulse schemas``,
``schemas.jsonschema``) and the codec (``schemas.codec``). Adding a topic is one line below.

>>> spec("churn-alerts").key, spec("churn-alerts").record.__name__
('user_id', 'ChurnAlert')
>>> [t.name for t in TOPICS if t.compacted]
['courses', 'user-profiles', 'course-neighbours', 'churn-model']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.events import Course, Purchase, Share, View
from schemas.outputs import ChurnAlert, DeadLetter, Recommendations, ReferralCandidate, UserProfile

__all__ = [
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "PUBLIC_TOPICS",
    "TOPICS",
    "TopicSpec",
    "spec",
]


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the project (its logical name: the settings' prefix comes in front)."""

    #: logical name, e.g. ``views`` (the full name is ``Settings.topic(name)``)
    name: str
    #: the field the message key holds (so the partitioning key)
    key: str
    #: the record class of the values; None for internal topics, whose values are internal JSON
    record: type[Any] | None
    #: log compaction (the latest value per key is what counts)
    compacted: bool = False
    #: written by the platform's producing services (else written by CoursePulse)
    input: bool = False
    #: read and written only by CoursePulse's own agents (no published schema)
    internal: bool = False
    #: partition count; None means the app's (``COURSEPULSE_PARTITIONS``), the co-partitioned default
    partitions: int | None = None


TOPICS: tuple[TopicSpec, ...] = (
    # inputs keyed by user_id, co-partitioned (same partition count): one worker owns a user
    TopicSpec("views", "user_id", View, input=True),
    TopicSpec("purchases", "user_id", Purchase, input=True),
    TopicSpec("shares", "user_id", Share, input=True),
    TopicSpec("courses", "course_id", Course, compacted=True, input=True),
    # outputs
    TopicSpec("recommendations", "user_id", Recommendations),
    TopicSpec("churn-alerts", "user_id", ChurnAlert),
    TopicSpec("referral-candidates", "user_id", ReferralCandidate),
    TopicSpec("user-profiles", "user_id", UserProfile, compacted=True),
    TopicSpec("events-dlq", "original key", DeadLetter),
    # internal: co-occurrence increments repartitioned by course, and the broadcast neighbour lists
    TopicSpec("course-cooc", "course_id", None, internal=True),
    TopicSpec("course-neighbours", "course_id", None, compacted=True, internal=True),
    # internal: referral links repartitioned by share_id, and credits back to the sharer's partition
    TopicSpec("referral-links", "share_id", None, internal=True),
    TopicSpec("referral-credits", "user_id", None, internal=True),
    # internal: every partition's churn classifier parameters, read by every worker (models.pooling)
    TopicSpec("churn-model", "partition", None, compacted=True, internal=True, partitions=1),
)

_BY_NAME = {t.name: t for t in TOPICS}

#: the inputs keyed by user_id (co-partitioned): one Faust stream over them feeds the ingest agent
INPUT_TOPICS: tuple[str, ...] = tuple(t.name for t in TOPICS if t.input and t.key == "user_id")
#: what CoursePulse publishes for other services
OUTPUT_TOPICS: tuple[str, ...] = tuple(t.name for t in TOPICS if not t.input and not t.internal)
#: every topic with a published schema (inputs and outputs), in registry order
PUBLIC_TOPICS: tuple[str, ...] = tuple(t.name for t in TOPICS if not t.internal)


def spec(name: str) -> TopicSpec:
    """The registry entry of a topic by its logical name; KeyError names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        msg = f"unknown topic {name!r}: expected one of {', '.join(_BY_NAME)}"
        raise KeyError(msg) from None
