"""The public simulator (:class:`PlatformSimulator`) and its event files."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from models.datasets.truth import SimTruth
from schemas.eventfile import write_events
from schemas.events import Course
from tools.simulator.config import SimConfig
from tools.simulator.run import _Run
from tools.simulator.state import _Course
from tools.simulator.vocabulary import (
    _CAT_NAMES,
    _CAT_SHARE,
    _PRICE_POINTS,
    _PRICE_WEIGHTS,
    CATEGORIES,
    DAY_MS,
    _Record,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# the public simulator


class PlatformSimulator:
    """A course platform's event stream for a seed: same config, same events, same truth."""

    def __init__(self, config: SimConfig) -> None:
        if not isinstance(config, SimConfig):
            msg = f"config must be a SimConfig, got {type(config).__name__}"
            raise ValueError(msg)
        if config.start_ms is None:
            now = int(time.time() * 1000)
            start = (now - config.days_ms) // DAY_MS * DAY_MS
            config = replace(config, start_ms=max(0, start))
        assert config.start_ms is not None
        #: the configuration, with ``start_ms`` resolved (so it reproduces this run)
        self.config = config
        self.start_ms = config.start_ms
        self.end_ms = config.start_ms + config.days_ms
        self._courses = self._build_catalogue()
        #: every course, in id order (= publication order), incl. ones published during the period
        self.catalogue: list[Course] = [c.record for c in self._courses]
        self._run: _Run | None = None

    def _build_catalogue(self) -> list[_Course]:
        cfg = self.config
        rng = random.Random(f"coursepulse-sim:{cfg.seed}:catalogue")
        n = cfg.courses
        cats = list(_CAT_NAMES[: min(n, len(_CAT_NAMES))])  # every category present when possible
        cats += rng.choices(_CAT_NAMES, weights=_CAT_SHARE, k=n - len(cats))
        rng.shuffle(cats)
        n_new = int(round(0.1 * n))
        new_flags = [True] * n_new + [False] * (n - n_new)
        rng.shuffle(new_flags)
        titles: set[str] = set()
        drafts = []
        for cat, is_new in zip(cats, new_flags, strict=True):
            _, subjects, patterns = CATEGORIES[cat]
            for _ in range(20):
                subject, subject_tag = rng.choice(subjects)
                pattern, pattern_tags = rng.choice(patterns)
                title = pattern.format(s=subject)
                if title not in titles:
                    break
            else:
                base = title
                vol = 2
                while f"{base}, Vol. {vol}" in titles:
                    vol += 1
                title = f"{base}, Vol. {vol}"
            titles.add(title)
            tags = [cat, subject_tag, *pattern_tags]
            tags = list(dict.fromkeys(tags))
            price = float(rng.choices(_PRICE_POINTS, weights=_PRICE_WEIGHTS)[0])
            if cat in ("programming", "data-science") and price and rng.random() < 0.3:
                price = float(_PRICE_POINTS[min(len(_PRICE_POINTS) - 1, _PRICE_POINTS.index(int(price)) + 2)])
            if is_new:
                published = self.start_ms + int(rng.uniform(0.02, 0.85) * cfg.days_ms) // 1000 * 1000
            else:
                published = max(0, self.start_ms - int(rng.uniform(1, 730) * DAY_MS) // 1000 * 1000)
                published = min(published, max(0, self.start_ms - 1))
            popularity = rng.lognormvariate(0.0, 1.1)
            lessons = int(rng.triangular(5, 31, 12))
            lesson_median = rng.lognormvariate(math.log(540), 0.35)  # ~9 minutes
            lesson_secs = [round(min(5400.0, max(90.0, lesson_median * rng.lognormvariate(0.0, 0.3))), 1)
                           for _ in range(min(30, lessons))]
            free = 0 if price == 0 else rng.choices((0, 1, 2, 3), weights=(1, 3, 4, 2))[0]
            drafts.append((published, cat, title, price, tags, popularity, lesson_secs, free, is_new))
        drafts.sort(key=lambda d: d[0])
        out = []
        for i, (published, cat, title, price, tags, popularity, lesson_secs, free, is_new) in enumerate(drafts):
            record = Course(
                course_id=f"c{i + 1:04d}", title=title, category=cat, price=price, published_at=published,
                tags=tags, schema_version=1, ts=published if is_new else self.start_ms,
            )
            out.append(_Course(record, popularity, lesson_secs, free))
        return out

    def events(self) -> Iterator[_Record]:
        """The event stream, generated lazily: catalogue first, then events in event-time order.

        Every call starts the simulation afresh and yields the identical sequence.
        """
        run = _Run(self)
        self._run = run
        return run.generate()

    def truth(self) -> SimTruth:
        """Ground truth of the latest ``events()`` run (a full run is done if none was started).

        Complete once ``events()`` has been exhausted; before that it is a snapshot (``complete``
        is False and ``churned_at`` may not yet be the churner's final event).
        """
        if self._run is None:
            for _ in self.events():
                pass
        assert self._run is not None
        if not self._run.exhausted:
            log.warning("truth() before events() was exhausted: returning an incomplete snapshot")
        return self._run.truth()


# ---------------------------------------------------------------------------------------------
# files


def write_jsonl(events: Iterable[_Record], path: Path | str) -> int:
    """Write records as JSON Lines (``{"type": kind, **fields}``, epoch-ms times); returns the count."""
    n = write_events(events, path)
    log.info("wrote %d records to %s", n, path)
    return n

