"""Ground truth of a simulated run and its files (``truth.json``, ``labels.csv``).

The simulator (``tools.simulator``) writes it; evaluations in ``models.evaluation`` read it. It lives
here so that models depend on no tool.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from schemas.base import format_ts, parse_ts

log = logging.getLogger(__name__)

__all__ = ["CourseTruth", "SimTruth", "UserTruth", "read_truth", "write_truth"]


@dataclass
class UserTruth:
    """What the simulator knows about a user and a model can only infer from events."""

    user_id: str
    joined_at: int
    interests: dict[str, float]  # category -> weight, sums to 1
    churned_at: int | None  # the user's last event, for users who went silent for good; else None
    drift_start: int | None  # when their activity started to decline (churners only)
    is_referrer: bool
    invited_by_share: str | None
    sessions_per_week: float = 0.0
    completion_propensity: float = 0.0
    price_sensitivity: float = 0.0
    events: int = 0  # events this user produced


@dataclass
class CourseTruth:
    """Latent course attributes that are not on the ``courses`` topic."""

    course_id: str
    category: str
    popularity: float
    lessons: int
    free_lessons: int
    published_at: int


@dataclass
class SimTruth:
    """Ground truth of one simulated run (complete once ``events()`` has been exhausted)."""

    users: dict[str, UserTruth]  # every user incl. invitees
    courses: dict[str, CourseTruth] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int = 0
    complete: bool = True

def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_ts(ms)


def _ms(text: str | None) -> int | None:
    return None if text is None else parse_ts(text)


def write_truth(truth: SimTruth, out_dir: Path | str) -> None:
    """Write ``truth.json`` (everything, times as ISO-8601 UTC) and ``labels.csv`` (user_id,churned_at)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    users = {}
    for uid, t in truth.users.items():
        d = dict(t.__dict__)
        for name in ("joined_at", "churned_at", "drift_start"):
            d[name] = _iso(d[name])
        users[uid] = d
    courses = {}
    for cid, c in truth.courses.items():
        d = dict(c.__dict__)
        d["published_at"] = _iso(c.published_at)
        courses[cid] = d
    doc = {"start": _iso(truth.start_ms), "end": _iso(truth.end_ms), "complete": truth.complete,
           "users": users, "courses": courses}
    (out_dir / "truth.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    with (out_dir / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["user_id", "churned_at"])
        for uid in sorted(truth.users):
            writer.writerow([uid, _iso(truth.users[uid].churned_at) or ""])
    log.info("wrote ground truth for %d users to %s", len(truth.users), out_dir)


def read_truth(out_dir: Path | str) -> SimTruth:
    """Read ``truth.json`` written by :func:`write_truth` back into a :class:`SimTruth`."""
    doc = orjson.loads((Path(out_dir) / "truth.json").read_bytes())
    users = {}
    for uid, d in doc["users"].items():
        d = dict(d)
        for name in ("joined_at", "churned_at", "drift_start"):
            d[name] = _ms(d[name])
        users[uid] = UserTruth(**d)
    courses = {}
    for cid, d in doc.get("courses", {}).items():
        d = dict(d)
        d["published_at"] = _ms(d["published_at"])
        courses[cid] = CourseTruth(**d)
    return SimTruth(users=users, courses=courses, start_ms=_ms(doc["start"]) or 0,
                    end_ms=_ms(doc["end"]) or 0, complete=doc.get("complete", True))
