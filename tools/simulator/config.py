"""What to simulate (:class:`SimConfig`), checked when it is made."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tools.simulator.vocabulary import _MAX_TS, DAY_MS

# ---------------------------------------------------------------------------------------------
# configuration and ground truth


def _check_number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
    ok_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        kind = "an integer" if integer else "a number"
        msg = f"{name} must be {kind}, got {type(value).__name__}"
        raise ValueError(msg)
    if not math.isfinite(value) or not lo <= value <= hi:
        msg = f"{name} must be in [{lo}, {hi}], got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: how many users and courses, for how long, from when, with which seed."""

    users: int = 2000  # users present at start or signing up during the period (invitees come on top)
    courses: int = 120
    days: float = 60.0
    start_ms: int | None = None  # start of simulated time; None -> (now - days) floored to a UTC midnight
    seed: int = 7
    churn_fraction: float = 0.3  # share of users who drift away and go silent during the period
    referrer_fraction: float = 0.1  # share of "natural referrers" who share a lot and whose invitees convert
    currency: str = "CNY"

    def __post_init__(self) -> None:
        _check_number("users", self.users, 1, 10_000_000, integer=True)
        _check_number("courses", self.courses, 1, 99_999, integer=True)
        _check_number("days", self.days, 0.01, 3650)
        _check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        _check_number("churn_fraction", self.churn_fraction, 0.0, 1.0)
        _check_number("referrer_fraction", self.referrer_fraction, 0.0, 1.0)
        if self.start_ms is not None:
            _check_number("start_ms", self.start_ms, 0, _MAX_TS - 1 - self.days_ms, integer=True)
        if not isinstance(self.currency, str) or not re.fullmatch(r"[A-Z]{3}", self.currency):
            msg = f"currency must be a three-letter upper-case ISO-4217 code, got {self.currency!r}"
            raise ValueError(msg)

    @property
    def days_ms(self) -> int:
        """Length of the simulated period in milliseconds."""
        return int(round(self.days * DAY_MS))
