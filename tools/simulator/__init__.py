"""A seeded, deterministic simulator of a paid-course platform's event stream and its ground truth.

Modules, one job each: ``vocabulary`` (categories, prices, channels, rhythm), ``config``
(:class:`SimConfig`), ``state`` (courses, enrolments, users), ``run`` (one pass: users and the
event heap), ``sessions`` (what a user does in a session), ``platform`` (:class:`PlatformSimulator`
and event files), ``command`` (``coursepulse simulate``). The ground truth's types and files live
in :mod:`models.datasets.truth` (evaluations read them; models import no tool).
"""

from __future__ import annotations

from models.datasets.truth import CourseTruth, SimTruth, UserTruth, read_truth, write_truth
from tools.simulator.config import SimConfig
from tools.simulator.platform import PlatformSimulator, write_jsonl
from tools.simulator.vocabulary import CATEGORIES, PLAN_PRICES

__all__ = [
    "CATEGORIES",
    "PLAN_PRICES",
    "CourseTruth",
    "PlatformSimulator",
    "SimConfig",
    "SimTruth",
    "UserTruth",
    "read_truth",
    "write_jsonl",
    "write_truth",
]
