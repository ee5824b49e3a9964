"""Input topics, written by the platform's producing services (key: ``user_id``).

Every event carries ``event_id`` (unique; used for de-duplication), ``user_id``, ``ts`` (event
time: ISO-8601 with offset or epoch milliseconds; held here as epoch milliseconds) and
``schema_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.base import Record, constraint
from schemas.exceptions import ValidationError

__all__ = ["CURRENCY_PATTERN", "ID_PATTERN", "Course", "Event", "Purchase", "Share", "View"]

#: identifiers: 1..128 printable characters, no whitespace
ID_PATTERN = r"[^\s]{1,128}"
#: ISO-4217 style three-letter upper-case code
CURRENCY_PATTERN = r"[A-Z]{3}"
SHARE_CHANNELS = ("wechat_moments", "wechat_group", "wechat_friend", "link", "email", "weibo", "qq", "other")


def _id(description: str, **kw: Any) -> Any:
    return constraint(description=description, pattern=ID_PATTERN, **kw)


@dataclass(frozen=True, slots=True)
class Event(Record):
    """Fields common to every user event."""

    event_id: str = _id("Unique id of this event; repeats are dropped.")
    user_id: str = _id("The user; also the message key.")
    ts: int = constraint(description="Event time (UTC).", timestamp=True)
    schema_version: int = constraint(description="Schema version the producer wrote.", ge=1, le=1000)


@dataclass(frozen=True, slots=True)
class View(Event):
    """A user watched part of a lesson of a course."""

    topic = "views"
    kind = "view"
    course_id: str = _id("Course watched.")
    lesson_id: str = _id("Lesson watched.")
    watch_seconds: float = constraint(description="Seconds watched in this view.", ge=0, le=86_400)
    progress: float = constraint(description="Progress through the course after this view, 0..1.", ge=0, le=1)
    rec_id: str | None = _id("The recommendation this view came from, if any.", default=None)


@dataclass(frozen=True, slots=True)
class Purchase(Event):
    """A user bought a course (``course_id``) or a subscription (``plan``)."""

    topic = "purchases"
    kind = "purchase"
    amount: float = constraint(description="Amount paid, in `currency`.", ge=0, le=1_000_000)
    currency: str = constraint(description="ISO-4217 currency code.", pattern=CURRENCY_PATTERN)
    order_id: str = _id("The platform's order id.")
    course_id: str | None = _id("Course bought (either this or `plan`).", default=None)
    plan: str | None = _id("Subscription plan bought (either this or `course_id`).", default=None)
    share_id: str | None = _id("The share that referred this buyer, if any.", default=None)
    rec_id: str | None = _id("The recommendation this purchase came from, if any.", default=None)

    def __post_init__(self) -> None:
        if (self.course_id is None) == (self.plan is None):
            msg = "course_id/plan: a purchase names exactly one of course_id or plan"
            raise ValidationError(msg)


@dataclass(frozen=True, slots=True)
class Share(Event):
    """A user shared a course to a channel; invitees who later buy carry its ``share_id``."""

    topic = "shares"
    kind = "share"
    course_id: str = _id("Course shared.")
    channel: str = constraint(
        description="Where it was shared.", enum=SHARE_CHANNELS
    )
    share_id: str = _id("Id of this share, carried by invitees' purchases.")


@dataclass(frozen=True, slots=True)
class Course(Record):
    """A catalogue entry (compacted topic, key ``course_id``)."""

    topic = "courses"
    kind = "course"
    course_id: str = _id("The course; also the message key.")
    title: str = constraint(description="Title.", min_len=1, max_len=300)
    category: str = constraint(description="Category.", min_len=1, max_len=100)
    price: float = constraint(description="List price.", ge=0, le=1_000_000)
    published_at: int = constraint(description="When it was published (UTC).", timestamp=True)
    tags: list[str] = constraint(description="Tags.", default=[], max_len=50)
    schema_version: int = constraint(description="Schema version the producer wrote.", ge=1, le=1000, default=1)
    ts: int | None = constraint(description="When this catalogue record was written (UTC).", timestamp=True, default=None)
