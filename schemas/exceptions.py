"""Failures of the data contract."""

from __future__ import annotations

__all__ = ["CoursePulseError", "DecodeError", "ValidationError"]


class CoursePulseError(Exception):
    """Root of every exception this project raises on purpose."""


class DecodeError(CoursePulseError):
    """The bytes of a record could not be read as a JSON object."""


class ValidationError(CoursePulseError):
    """A decoded record does not satisfy its topic's schema; the message names the field."""
