"""What travels on the topics: typed, validated, versioned records."""

from __future__ import annotations

from schemas.base import SCHEMA_VERSION, format_ts, parse, parse_ts, to_dict
from schemas.codec import INPUT_TYPES, KIND_TYPES, RejectedRecord, dead_letter, decode_event, encode
from schemas.events import Course, Event, Purchase, Share, View
from schemas.exceptions import CoursePulseError, DecodeError, ValidationError
from schemas.outputs import (
    SEGMENTS,
    ChurnAlert,
    DeadLetter,
    Factor,
    RecItem,
    Recommendations,
    ReferralCandidate,
    UserProfile,
)

__all__ = [
    "INPUT_TYPES",
    "KIND_TYPES",
    "SCHEMA_VERSION",
    "SEGMENTS",
    "ChurnAlert",
    "Course",
    "CoursePulseError",
    "DeadLetter",
    "DecodeError",
    "Event",
    "Factor",
    "Purchase",
    "RecItem",
    "Recommendations",
    "ReferralCandidate",
    "RejectedRecord",
    "Share",
    "UserProfile",
    "ValidationError",
    "View",
    "dead_letter",
    "decode_event",
    "encode",
    "format_ts",
    "parse",
    "parse_ts",
    "to_dict",
]
