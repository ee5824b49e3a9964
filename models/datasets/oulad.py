"""OULAD (real data, CC-BY 4.0) -> CoursePulse event files: ``events.jsonl``, ``labels.csv``.

Source: Kuzilek J., Hlosta M., Zdrahal Z. "Open University Learning Analytics dataset",
Scientific Data 4, 170171 (2017), https://doi.org/10.1038/sdata.2017.171, licensed CC-BY 4.0.
The attribution travels with every output (``ATTRIBUTION.md``, ``summary.json``).

Input: a directory of gzip CSVs (default ``/work/shared/data/oulad``): ``courses.csv.gz``,
``vle.csv.gz``, ``studentRegistration.csv.gz`` and ``studentVle_first1M.csv.gz`` (the first
1,048,575 rows of the 10.6M-row click log). ``studentInfo`` and ``assessments`` are not used.

Output (:func:`convert_oulad`):

- ``events.jsonl``: one ``{"type": rec.kind, **to_dict(rec)}`` per line (orjson, times as epoch
  ms), catalogue (``course``) records first, then registrations and clicks in non-decreasing
  event time. Catalogue records carry ``ts`` = the earliest time in the file, so the ``ts`` of
  the whole file never decreases.
- ``labels.csv``: ``user_id,churned_at`` for every user in the output; ISO-8601 UTC or empty.
- ``ATTRIBUTION.md``: citation, licence and this mapping.
- ``summary.json``: counts, time range, per-presentation facts and data-quality diagnostics.

Mapping, choice by choice:

1. **Which presentations.** Only the module-presentations with clicks in the click file are
   converted: with the shipped file AAA-2013J, AAA-2014J, BBB-2013B and BBB-2013J (BBB-2013J's
   log stops at day 133 of 268). With ``limit_rows`` only those present in the rows read.
   Registrations of the other 18 presentations are dropped: they have no behaviour to learn from.
2. **Time.** ``code_presentation`` ``YYYYB`` starts on YYYY-02-01, ``YYYYJ`` on YYYY-10-01
   (00:00 UTC; OULAD.names: B = February, J = October). OULAD gives only day numbers relative to
   that start (``date``, ``date_registration``, ``date_unregistration``, possibly negative);
   a day number d becomes start + d days.
3. **Items = learning resources.** The recommendable item is a VLE resource ``id_site``
   (``course_id`` ``site-<id_site>``): recommendations say which resource a student opens
   next. One ``Course`` per ``id_site`` present in the clicks read: category
   ``<code_module>/<activity_type>`` (from ``vle.csv.gz``), tags ``[activity_type,
   code_module]``, title ``<activity_type> <id_site> (<code_module>)``, price 0.0,
   ``published_at`` = the presentation start or the earliest click on it, whichever is earlier.
4. **Registrations = purchases.** Each registration is a ``Purchase`` of the module-presentation
   (``course_id`` ``<code_module>-<code_presentation>``, which is *not* a catalogue item), amount
   0.0 (OULAD has no prices; fees are not in the data), currency GBP, ``order_id`` and
   ``event_id`` ``reg-<module>-<presentation>-<id_student>``, at start + ``date_registration``
   days. A missing ``date_registration`` (3 rows) -> the presentation start, or the
   unregistration day if that is earlier (so an enrolment never follows its own withdrawal).
5. **Clicks = views.** Each click row is a ``View``: ``course_id`` ``site-<id_site>``,
   ``lesson_id`` ``<code_module>-<code_presentation>``, ``watch_seconds`` = 60 x ``sum_click``
   (one click ~ one minute of engagement; capped at 86,400, never reached: max 1,326 clicks),
   ``progress`` = min(1, cumulative clicks of this student on this site / 10), accumulated in
   output order, so it never decreases per user-course. OULAD only knows the day of a click:
   every row of a student-day gets ts = day start + 8 h + its rank (in file order) among that
   student's rows of that calendar day, in minutes (capped at 16 h - 1 min; the most rows in
   one student-day is 151), which gives a deterministic strict order per user and keeps the
   file's order. ``event_id`` ``v-<row index>`` (0-based data row of the click file). The
   click file holds ~89.5k exact duplicate rows; they are kept (distinct row index, distinct
   event), as in the source.
6. **Users and churn.** ``user_id`` ``s<id_student>``; a student registered in several
   converted presentations is one user. ``churned_at`` = start + ``date_unregistration`` of a
   withdrawn registration (the latest one if several). A student with a non-withdrawn
   registration whose presentation ends (start + ``module_presentation_length``) after that
   withdrawal has come back (a later registration) or carried on elsewhere: ``churned_at`` is
   empty. In the shipped data all 80 multi-registration students are retakes (withdrew from
   the first presentation, re-registered for the next one). A withdrawal is a label only; no
   event marks it in ``events.jsonl``.
7. **Ordering.** Events are sorted by (ts, registrations before clicks, source row), a stable
   deterministic order; registrations are at 00:00, clicks at 08:00 or later.

Every record is built through the schema dataclasses and, when ``validate`` is on (default), is
checked with ``schemas.base.parse(type(r), to_dict(r))`` before it is written.

Command line: ``python -m models.datasets.oulad [SRC] OUT [--limit-rows N]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import logging
import os
import re
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from schemas.base import SCHEMA_VERSION, format_ts, parse, to_dict
from schemas.events import Course, Purchase, View

__all__ = [
    "CITATION",
    "CLICK_FILE",
    "COURSES_FILE",
    "DEFAULT_SRC",
    "LICENCE",
    "REGISTRATION_FILE",
    "VLE_FILE",
    "OULADConversion",
    "convert_oulad",
    "iter_oulad_events",
    "load_oulad",
    "main",
    "presentation_start_ms",
]

log = logging.getLogger(__name__)

DEFAULT_SRC = Path("/work/shared/data/oulad")
CLICK_FILE = "studentVle_first1M.csv.gz"
REGISTRATION_FILE = "studentRegistration.csv.gz"
VLE_FILE = "vle.csv.gz"
COURSES_FILE = "courses.csv.gz"

CITATION = (
    'Kuzilek J., Hlosta M., Zdrahal Z. "Open University Learning Analytics dataset", '
    "Scientific Data 4, 170171 (2017). https://doi.org/10.1038/sdata.2017.171"
)
LICENCE = "CC-BY 4.0 (Creative Commons Attribution 4.0 International)"
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"

DAY_MS = 86_400_000
MINUTE_MS = 60_000
#: clicks of a day start at 08:00 UTC
VIEW_DAY_OFFSET_MS = 8 * 3_600_000
#: the rank offset stays below 16 h, so every click stays on its own day
MAX_RANK_MINUTES = 16 * 60 - 1
#: one click ~ one minute of engagement
SECONDS_PER_CLICK = 60.0
MAX_WATCH_SECONDS = 86_400.0
#: a student has "completed" a resource after this many clicks on it
CLICKS_FOR_FULL_PROGRESS = 10
CURRENCY = "GBP"

_PRESENTATION_RE = re.compile(r"(\d{4})([BJ])")
_START_MONTH = {"B": 2, "J": 10}


def presentation_start_ms(code_presentation: str) -> int:
    """Start of a presentation in epoch ms: ``YYYYB`` -> YYYY-02-01, ``YYYYJ`` -> YYYY-10-01 UTC.

    >>> format_ts(presentation_start_ms("2013J"))
    '2013-10-01T00:00:00.000Z'
    """
    m = _PRESENTATION_RE.fullmatch(code_presentation)
    if m is None:
        msg = (
            f"code_presentation {code_presentation!r}: expected YYYYB (starts in February) "
            "or YYYYJ (starts in October)"
        )
        raise ValueError(msg)
    start = datetime(int(m[1]), _START_MONTH[m[2]], 1, tzinfo=UTC)
    return int(start.timestamp()) * 1000


# ---------------------------------------------------------------------------------------------
# reading


def _require(src: Path, name: str) -> Path:
    path = src / name
    if not path.is_file():
        msg = f"OULAD file not found: {path} (expected the gzip CSVs of OULAD in {src})"
        raise FileNotFoundError(msg)
    return path


def _read_csv(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Yield ``(line number, values of columns)`` of a gzip CSV, after checking its header."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            msg = f"{path}: empty file, expected a header with {', '.join(columns)}"
            raise ValueError(msg)
        index = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in columns if c not in index]
        if missing:
            msg = f"{path}: missing column(s) {', '.join(missing)}; header is {', '.join(header)}"
            raise ValueError(msg)
        get = itemgetter(*[index[c] for c in columns])
        width = max(index[c] for c in columns) + 1
        for lineno, row in enumerate(reader, 2):
            if len(row) < width:
                if not row:
                    continue
                msg = f"{path}:{lineno}: expected at least {width} fields, got {len(row)}"
                raise ValueError(msg)
            yield lineno, get(row)


def _opt_int(value: str, path: Path, lineno: int, column: str) -> int | None:
    value = value.strip()
    if value in ("", "?"):
        return None
    try:
        return int(value)
    except ValueError:
        msg = f"{path}:{lineno}: {column}: expected an integer or empty, got {value[:40]!r}"
        raise ValueError(msg) from None


# ---------------------------------------------------------------------------------------------
# the conversion


@dataclass(slots=True)
class _Registration:
    module: str
    presentation: str
    student: str
    start: int
    reg_ts: int
    unreg_ts: int | None
    unreg_day: int | None
    end_ts: int


@dataclass
class OULADConversion:
    """OULAD loaded and mapped: catalogue, the sorted event plan, labels and the summary.

    Records are built lazily by :meth:`records` (the click log is ~1M rows); iterating twice
    yields the identical sequence.
    """

    catalogue: list[Course]
    #: sorted plan: registrations ``(ts, 0, idx, Purchase)`` and clicks
    #: ``(ts, 1, row, user_id, course_id, lesson_id, sum_click)``
    plan: list[tuple[Any, ...]]
    #: user_id -> churned_at (epoch ms) or None, for every user in the output
    labels: dict[str, int | None]
    summary: dict[str, Any] = field(default_factory=dict)

    def records(self) -> Iterator[Course | Purchase | View]:
        """Catalogue first, then registrations and clicks in non-decreasing event time."""
        yield from self.catalogue
        progress: dict[tuple[str, str], int] = {}
        sv = SCHEMA_VERSION
        for item in self.plan:
            if item[1] == 0:
                yield item[3]
                continue
            ts, _, row, user, course, lesson, clicks = item
            key = (user, course)
            total = progress.get(key, 0) + clicks
            progress[key] = total
            yield View(
                event_id=f"v-{row}",
                user_id=user,
                ts=ts,
                schema_version=sv,
                course_id=course,
                lesson_id=lesson,
                watch_seconds=min(SECONDS_PER_CLICK * clicks, MAX_WATCH_SECONDS),
                progress=min(1.0, total / CLICKS_FOR_FULL_PROGRESS),
            )


def _load_lengths(src: Path) -> dict[str, int]:
    path = _require(src, COURSES_FILE)
    out: dict[str, int] = {}
    for lineno, (module, pres, length) in _read_csv(
        path, ("code_module", "code_presentation", "module_presentation_length")
    ):
        days = _opt_int(length, path, lineno, "module_presentation_length")
        if days is None:
            msg = f"{path}:{lineno}: module_presentation_length is empty for {module}-{pres}"
            raise ValueError(msg)
        out[f"{module}-{pres}"] = days
    return out


def _load_vle(src: Path) -> dict[str, tuple[str, str, str]]:
    """id_site -> (code_module, code_presentation, activity_type)."""
    path = _require(src, VLE_FILE)
    return {
        site: (module, pres, activity.strip() or "unknown")
        for _, (site, module, pres, activity) in _read_csv(
            path, ("id_site", "code_module", "code_presentation", "activity_type")
        )
    }


def load_oulad(src: Path | str = DEFAULT_SRC, limit_rows: int | None = None) -> OULADConversion:
    """Read OULAD from ``src`` and map it (see the module docstring); nothing is written.

    ``limit_rows`` reads only the first N click rows (and converts only the presentations in
    them). Raises FileNotFoundError naming a missing input file and ValueError on bad input.
    """
    if limit_rows is not None and (isinstance(limit_rows, bool) or not isinstance(limit_rows, int) or limit_rows < 1):
        msg = f"limit_rows: expected a positive integer or None, got {limit_rows!r}"
        raise ValueError(msg)
    src = Path(src)
    if not src.is_dir():
        msg = f"OULAD directory not found: {src}"
        raise FileNotFoundError(msg)
    started = time.perf_counter()
    click_path = _require(src, CLICK_FILE)
    reg_path = _require(src, REGISTRATION_FILE)
    lengths = _load_lengths(src)
    vle = _load_vle(src)

    # -- clicks ---------------------------------------------------------------------------
    starts: dict[str, int] = {}
    users: dict[str, str] = {}
    sites: dict[str, str] = {}
    lessons: dict[tuple[str, str], str] = {}
    rank: dict[tuple[str, int], int] = {}
    first_click: dict[str, int] = {}  # course_id -> earliest click ts
    site_info: dict[str, tuple[str, str, str]] = {}  # course_id -> (id_site, lesson, module)
    pres_days: dict[str, list[int]] = {}  # lesson -> [rows, first day, last day]
    plan: list[tuple[Any, ...]] = []
    clicks_by_reg: dict[tuple[str, str], list[int]] = {}  # (user, lesson) -> click days
    seen_rows: set[tuple[str, ...]] = set()
    duplicates = 0
    sum_clicks = 0
    rows_read = 0
    append = plan.append
    columns = ("code_module", "code_presentation", "id_student", "id_site", "date", "sum_click")
    for lineno, values in _read_csv(click_path, columns):
        if limit_rows is not None and rows_read >= limit_rows:
            break
        row = rows_read
        rows_read += 1
        module, pres, student, site, date_s, clicks_s = values
        try:
            day = int(date_s)
            clicks = int(clicks_s)
        except ValueError:
            msg = f"{click_path}:{lineno}: date and sum_click must be integers, got {date_s!r}, {clicks_s!r}"
            raise ValueError(msg) from None
        if clicks < 0:
            msg = f"{click_path}:{lineno}: sum_click must be >= 0, got {clicks}"
            raise ValueError(msg)
        if values in seen_rows:
            duplicates += 1
        else:
            seen_rows.add(values)
        lesson = lessons.get((module, pres))
        if lesson is None:
            lesson = lessons[(module, pres)] = f"{module}-{pres}"
            starts[lesson] = presentation_start_ms(pres)
            pres_days[lesson] = [0, day, day]
        user = users.get(student)
        if user is None:
            user = users[student] = f"s{student}"
        course = sites.get(site)
        if course is None:
            course = sites[site] = f"site-{site}"
            site_info[course] = (site, lesson, module)
        day_ms = starts[lesson] + day * DAY_MS
        rkey = (user, day_ms)
        r = rank.get(rkey, 0)
        rank[rkey] = r + 1
        ts = day_ms + VIEW_DAY_OFFSET_MS + min(r, MAX_RANK_MINUTES) * MINUTE_MS
        if ts < first_click.get(course, ts + 1):
            first_click[course] = ts
        stats = pres_days[lesson]
        stats[0] += 1
        if day < stats[1]:
            stats[1] = day
        if day > stats[2]:
            stats[2] = day
        clicks_by_reg.setdefault((user, lesson), []).append(day)
        sum_clicks += clicks
        append((ts, 1, row, user, course, lesson, clicks))
    del seen_rows, rank
    if not rows_read:
        msg = f"{click_path}: no click rows; nothing to convert"
        raise ValueError(msg)
    converted = sorted(lessons.values())
    log.info("read %d click rows of %s (%s)", rows_read, ", ".join(converted), click_path.name)

    # -- registrations of the converted presentations -----------------------------------------
    regs: list[_Registration] = []
    reg_columns = ("code_module", "code_presentation", "id_student", "date_registration", "date_unregistration")
    missing_reg_date = 0
    for lineno, (module, pres, student, reg_s, unreg_s) in _read_csv(reg_path, reg_columns):
        lesson = f"{module}-{pres}"
        if lesson not in starts:
            continue
        start = starts[lesson]
        if lesson not in lengths:
            msg = f"{COURSES_FILE}: no module_presentation_length for {lesson} (needed for churn labels)"
            raise ValueError(msg)
        reg_day = _opt_int(reg_s, reg_path, lineno, "date_registration")
        unreg_day = _opt_int(unreg_s, reg_path, lineno, "date_unregistration")
        unreg_ts = None if unreg_day is None else start + unreg_day * DAY_MS
        if reg_day is None:
            missing_reg_date += 1
            reg_ts = start if unreg_ts is None else min(start, unreg_ts)
        else:
            reg_ts = start + reg_day * DAY_MS
        regs.append(
            _Registration(module, pres, student, start, reg_ts, unreg_ts, unreg_day,
                          start + lengths[lesson] * DAY_MS)
        )
    for i, reg in enumerate(regs):
        user = users.get(reg.student)
        if user is None:
            user = users[reg.student] = f"s{reg.student}"
        rid = f"reg-{reg.module}-{reg.presentation}-{reg.student}"
        purchase = Purchase(
            event_id=rid, user_id=user, ts=reg.reg_ts, schema_version=SCHEMA_VERSION, amount=0.0,
            currency=CURRENCY, order_id=rid, course_id=f"{reg.module}-{reg.presentation}",
        )
        append((reg.reg_ts, 0, i, purchase))
    plan.sort()
    log.info("%d registrations in the converted presentations", len(regs))

    # -- catalogue ------------------------------------------------------------------------
    first_ts = plan[0][0]
    last_ts = plan[-1][0]
    unknown_sites = 0
    entries: list[tuple[int, int, Course]] = []
    for course, (site, lesson, module) in site_info.items():
        info = vle.get(site)
        if info is None:
            unknown_sites += 1
            activity = "unknown"
        else:
            module, activity = info[0], info[2]
        published = min(starts[lesson], first_click[course])
        entries.append((published, int(site) if site.isdigit() else 0, Course(
            course_id=course,
            title=f"{activity} {site} ({module})",
            category=f"{module}/{activity}",
            price=0.0,
            published_at=published,
            tags=[activity, module],
            schema_version=SCHEMA_VERSION,
            ts=None,
        )))
    if unknown_sites:
        log.warning("%d clicked id_site(s) are not in %s: activity_type 'unknown'", unknown_sites, VLE_FILE)
    entries.sort(key=itemgetter(0, 1))
    catalogue_ts = min(first_ts, entries[0][0])
    catalogue = [
        Course(course_id=c.course_id, title=c.title, category=c.category, price=c.price,
               published_at=c.published_at, tags=c.tags, schema_version=c.schema_version, ts=catalogue_ts)
        for _, _, c in entries
    ]

    # -- labels ---------------------------------------------------------------------------
    by_user: dict[str, list[_Registration]] = {}
    for reg in regs:
        by_user.setdefault(users[reg.student], []).append(reg)
    labels: dict[str, int | None] = {}
    returned = 0
    for user in sorted(users.values()):
        urs = by_user.get(user, [])
        withdrawals = [r.unreg_ts for r in urs if r.unreg_ts is not None]
        churned: int | None = max(withdrawals) if withdrawals else None
        if churned is not None and any(r.unreg_ts is None and r.end_ts > churned for r in urs):
            churned = None
            returned += 1
        labels[user] = churned

    summary = _summarise(
        src=src, limit_rows=limit_rows, rows_read=rows_read, converted=converted, starts=starts,
        lengths=lengths, pres_days=pres_days, regs=regs, users=users, labels=labels, plan=plan,
        catalogue=catalogue, clicks_by_reg=clicks_by_reg, duplicates=duplicates, sum_clicks=sum_clicks,
        missing_reg_date=missing_reg_date, returned=returned, first_ts=first_ts, last_ts=last_ts,
    )
    no_reg = summary["diagnostics"]["click_rows_without_registration"]
    if no_reg:
        log.warning("%d click rows belong to students with no registration in the presentation", no_reg)
    log.info("mapped OULAD in %.1f s: %d users, %d courses, %d views, %d purchases",
             time.perf_counter() - started, summary["users"], summary["courses"], summary["views"],
             summary["purchases"])
    return OULADConversion(catalogue=catalogue, plan=plan, labels=labels, summary=summary)


def _summarise(
    *,
    src: Path,
    limit_rows: int | None,
    rows_read: int,
    converted: list[str],
    starts: dict[str, int],
    lengths: dict[str, int],
    pres_days: dict[str, list[int]],
    regs: list[_Registration],
    users: dict[str, str],
    labels: dict[str, int | None],
    plan: list[tuple[Any, ...]],
    catalogue: list[Course],
    clicks_by_reg: dict[tuple[str, str], list[int]],
    duplicates: int,
    sum_clicks: int,
    missing_reg_date: int,
    returned: int,
    first_ts: int,
    last_ts: int,
) -> dict[str, Any]:
    """Counts, time range, per-presentation facts and data-quality diagnostics."""
    regs_by_pres: dict[str, int] = {}
    withdrawn_by_pres: dict[str, int] = {}
    reg_keys: set[tuple[str, str]] = set()
    withdrawn = [r for r in regs if r.unreg_ts is not None]
    for r in regs:
        lesson = f"{r.module}-{r.presentation}"
        regs_by_pres[lesson] = regs_by_pres.get(lesson, 0) + 1
        reg_keys.add((users[r.student], lesson))
        if r.unreg_ts is not None:
            withdrawn_by_pres[lesson] = withdrawn_by_pres.get(lesson, 0) + 1
    after_rows = 0
    after_regs = 0
    without_clicks = 0
    after_log_end = 0
    for r in withdrawn:
        lesson = f"{r.module}-{r.presentation}"
        days = clicks_by_reg.get((users[r.student], lesson))
        if not days:
            without_clicks += 1
        else:
            n = sum(1 for d in days if d > r.unreg_day)
            after_rows += n
            after_regs += n > 0
        if r.unreg_day is not None and r.unreg_day > pres_days[lesson][2]:
            after_log_end += 1
    last_event: dict[str, int] = {}
    for item in plan:
        if item[1] == 1:
            last_event[item[3]] = item[0]
    churned = {u: t for u, t in labels.items() if t is not None}
    lags = [(t - last_event[u]) / DAY_MS for u, t in churned.items() if u in last_event]
    no_reg_rows = sum(len(days) for key, days in clicks_by_reg.items() if key not in reg_keys)
    purchases = len(regs)
    views = len(plan) - purchases
    presentations = {
        lesson: {
            "start": format_ts(starts[lesson]),
            "length_days": lengths.get(lesson),
            "registrations": regs_by_pres.get(lesson, 0),
            "withdrawn_registrations": withdrawn_by_pres.get(lesson, 0),
            "click_rows": pres_days[lesson][0],
            "first_click_day": pres_days[lesson][1],
            "last_click_day": pres_days[lesson][2],
        }
        for lesson in converted
    }
    return {
        "dataset": "OULAD (Open University Learning Analytics Dataset)",
        "citation": CITATION,
        "licence": LICENCE,
        "source_dir": str(src),
        "limit_rows": limit_rows,
        "click_rows_read": rows_read,
        "presentations": presentations,
        "users": len(labels),
        "courses": len(catalogue),
        "views": views,
        "purchases": purchases,
        "withdrawn_users": len(churned),
        "withdrawn_registrations": len(withdrawn),
        "withdrew_then_returned_users": returned,
        "users_with_clicks": len(last_event),
        "sum_click_total": sum_clicks,
        "time_range": {
            "first_event": format_ts(first_ts),
            "last_event": format_ts(last_ts),
            "first_event_ms": first_ts,
            "last_event_ms": last_ts,
            "first_churned_at": format_ts(min(churned.values())) if churned else None,
            "last_churned_at": format_ts(max(churned.values())) if churned else None,
        },
        "diagnostics": {
            "duplicate_click_rows": duplicates,
            "missing_date_registration": missing_reg_date,
            "click_rows_without_registration": no_reg_rows,
            "users_without_clicks": len(labels) - len(last_event),
            "withdrawn_users_without_clicks": sum(1 for u in churned if u not in last_event),
            "withdrawn_registrations_without_clicks": without_clicks,
            "withdrawals_before_start": sum(1 for r in withdrawn if r.unreg_day is not None and r.unreg_day < 0),
            "withdrawals_on_or_before_start": sum(
                1 for r in withdrawn if r.unreg_day is not None and r.unreg_day <= 0
            ),
            "withdrawals_after_click_log_ends": after_log_end,
            "click_rows_after_withdrawal": after_rows,
            "registrations_with_clicks_after_withdrawal": after_regs,
            "days_from_last_click_to_churned_at": {
                "users": len(lags),
                "negative": sum(1 for x in lags if x < 0),
                "median": round(statistics.median(lags), 2) if lags else None,
                "p90": round(statistics.quantiles(lags, n=10)[-1], 2) if len(lags) >= 2 else None,
            },
        },
    }


def iter_oulad_events(
    src: Path | str = DEFAULT_SRC, limit_rows: int | None = None
) -> Iterator[Course | Purchase | View]:
    """The converted records: catalogue first, then events in non-decreasing event time."""
    return load_oulad(src, limit_rows).records()


# ---------------------------------------------------------------------------------------------
# writing


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb", buffering=1 << 20) as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonl(records: Iterable[Course | Purchase | View], validate: bool, counts: dict[str, int]) -> Iterator[bytes]:
    dumps = orjson.dumps
    for rec in records:
        data = to_dict(rec)
        if validate:
            parse(type(rec), data)
        counts[rec.kind] = counts.get(rec.kind, 0) + 1
        yield dumps({"type": rec.kind, **data})
        yield b"\n"


def _attribution(summary: dict[str, Any]) -> str:
    pres = ", ".join(summary["presentations"])
    tr = summary["time_range"]
    return f"""# Attribution

The files in this directory are derived from the **Open University Learning Analytics Dataset
(OULAD)**:

> {CITATION}

Licence: **{LICENCE}** — {LICENCE_URL}. The data and anything derived from it (these files,
figures, evaluation results) must carry this attribution. Changes were made: OULAD was
converted into CoursePulse's event format as described below; no values were invented except
where stated (times of day, prices of 0, watch time from click counts).

Converted by `models.datasets.oulad` (CoursePulse) from `{summary["source_dir"]}`; click rows
read: {summary["click_rows_read"]:,}{" (limit_rows=" + str(summary["limit_rows"]) + ")" if summary["limit_rows"] else ""}.
Presentations converted: {pres}. Events from {tr["first_event"]} to {tr["last_event"]}.
Users: {summary["users"]:,}; courses (resources): {summary["courses"]:,}; views: {summary["views"]:,};
purchases (registrations): {summary["purchases"]:,}; users with a churn label: {summary["withdrawn_users"]:,}.

## Mapping

- **Presentations.** Only the module-presentations with clicks in `{CLICK_FILE}` (the first
  1,048,575 rows of the 10.6M-row click log) are converted: AAA-2013J, AAA-2014J, BBB-2013B and
  BBB-2013J with the full file (BBB-2013J's log stops at day 133 of 268, so its students all go
  silent there). Registrations of the other presentations are left out.
- **Time.** `YYYYB` presentations start on YYYY-02-01, `YYYYJ` on YYYY-10-01, 00:00 UTC
  (OULAD.names: B = February, J = October). OULAD day numbers (`date`, `date_registration`,
  `date_unregistration`, may be negative) become start + days.
- **Courses (items) = VLE resources.** One `course` record per `id_site` clicked:
  `course_id` `site-<id_site>`, category `<code_module>/<activity_type>` (from `vle.csv`), tags
  `[activity_type, code_module]`, title `<activity_type> <id_site> (<code_module>)`, price 0.0,
  `published_at` = presentation start or the first click on it, whichever is earlier. Catalogue
  records come first in `events.jsonl`, with `ts` = the earliest time in the file.
- **Purchases = registrations.** `course_id` `<code_module>-<code_presentation>` (the
  module-presentation, not a catalogue item), amount 0.0 (OULAD has no prices), currency GBP,
  `order_id` = `event_id` = `reg-<module>-<presentation>-<id_student>`, at start +
  `date_registration` days; a missing `date_registration` -> the start, or the unregistration day
  if earlier.
- **Views = click rows** (`studentVle`): `course_id` `site-<id_site>`, `lesson_id`
  `<code_module>-<code_presentation>`, `watch_seconds` = 60 x `sum_click` (one click is taken as
  about one minute of engagement), `progress` = min(1, cumulative clicks of the student on the
  resource / 10), never decreasing per user and resource. OULAD only records the day: a
  student's rows of one day get 08:00 UTC + their rank within that student-day (file order) in
  minutes (capped below 16 h), a deterministic strict order. `event_id` `v-<row index>`
  (0-based data row). Exact duplicate rows of the source are kept.
- **Users and churn labels** (`labels.csv`). `user_id` `s<id_student>`; one user across
  presentations. `churned_at` = start + `date_unregistration` of a withdrawn registration (the
  latest if several), empty if the student never withdrew, or if they have a non-withdrawn
  registration whose presentation ends after that withdrawal (they returned, e.g. retook the
  module, or carried on). Withdrawals are labels only; there is no event for them.
- **Order.** Events are sorted by time, registrations before clicks at equal times, then by
  source row.

See `summary.json` for counts and data-quality diagnostics (withdrawals before the start,
withdrawn students without clicks, clicks after a withdrawal, duplicate rows).
"""


def convert_oulad(
    src: Path | str = DEFAULT_SRC,
    out: Path | str = Path("oulad-out"),
    limit_rows: int | None = None,
    *,
    validate: bool = True,
) -> dict[str, Any]:
    """Convert OULAD in ``src`` into ``out``; return the summary (also in ``summary.json``).

    Writes ``events.jsonl``, ``labels.csv``, ``ATTRIBUTION.md`` and ``summary.json`` (each
    replaced atomically). ``validate`` checks every record with ``schemas.base.parse``.
    """
    started = time.perf_counter()
    conv = load_oulad(src, limit_rows)
    out = Path(out)
    if out.exists() and not out.is_dir():
        msg = f"output path exists and is not a directory: {out}"
        raise ValueError(msg)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    _write_atomic(out / "events.jsonl", _jsonl(conv.records(), validate, counts))
    expected = {"course": conv.summary["courses"], "purchase": conv.summary["purchases"],
                "view": conv.summary["views"]}
    if {k: counts.get(k, 0) for k in expected} != expected:  # pragma: no cover - internal invariant
        msg = f"wrote {counts}, expected {expected}"
        raise RuntimeError(msg)
    lines = ["user_id,churned_at\n"]
    lines.extend(f"{u},{'' if t is None else format_ts(t)}\n" for u, t in conv.labels.items())
    _write_atomic(out / "labels.csv", [("".join(lines)).encode()])
    _write_atomic(out / "ATTRIBUTION.md", [_attribution(conv.summary).encode()])
    summary = dict(conv.summary)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    _write_atomic(out / "summary.json", [orjson.dumps(summary, option=orjson.OPT_INDENT_2), b"\n"])
    log.info("wrote %s in %.1f s (%d records)", out, summary["seconds"], sum(counts.values()))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.datasets.oulad [SRC] OUT [--limit-rows N] [--no-validate]``."""
    ap = argparse.ArgumentParser(prog="python -m models.datasets.oulad", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, metavar="[SRC] OUT",
                    help=f"OULAD directory (default {DEFAULT_SRC}) and output directory")
    ap.add_argument("--limit-rows", type=int, default=None, help="read only the first N click rows")
    ap.add_argument("--no-validate", action="store_true", help="skip re-validating every record")
    args = ap.parse_args(argv)
    if len(args.paths) > 2:
        ap.error("expected [SRC] OUT")
    src, out = (DEFAULT_SRC, args.paths[0]) if len(args.paths) == 1 else args.paths
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = convert_oulad(src, out, args.limit_rows, validate=not args.no_validate)
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
