"""(g) Offline evaluation throughput, and the simulator traffic every live part is fed."""

from __future__ import annotations

import itertools
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# (g) offline evaluation


def bench_eval(sim_events: int = 20_000, *, oulad: Path | None = None, oulad_events: int | None = 200_000,
               seed: int = 7, workdir: Path | None = None) -> dict[str, Any]:
    """``coursepulse eval``'s evaluator (:func:`tools.evaluate.build_evaluator`, the worker's
    defaults) events/s, reading event files as ``coursepulse eval`` does.

    On a simulator stream of ``sim_events`` user events (written to a file first), and on the
    OULAD conversion (its first ``oulad_events`` records; None or 0: all) when ``oulad`` exists.
    ``parse_events_per_s`` is the rate of reading the same records alone.
    """
    from schemas.eventfile import read_events, read_labels, write_events
    from streams.settings import Settings
    from tools.evaluate import build_evaluator

    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="coursepulse-bench-eval-", dir=workdir))
    try:
        courses, events = _simulate(sim_events, seed)
        path = tmp / "sim.jsonl"
        write_events([*courses, *events], path)
        out["simulator"] = _eval_file(build_evaluator(Settings(), seed=seed), read_events, path, None)
        out["simulator"]["source"] = f"simulator seed {seed}, {len(courses)} courses"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if oulad is not None and Path(oulad).exists():
        oulad = Path(oulad)
        labels_path = oulad.parent / "labels.csv"
        labels = read_labels(labels_path) if labels_path.exists() else None
        limit = oulad_events or None
        out["oulad"] = _eval_file(build_evaluator(Settings(), seed=seed, labels=labels), read_events, oulad, limit)
        out["oulad"]["source"] = str(oulad)
        out["oulad"]["labels"] = str(labels_path) if labels is not None else None
        out["oulad"]["limit_records"] = limit
    best = out.get("oulad") or out["simulator"]
    out["events_per_s"] = best["events_per_s"]
    out["events_per_s_source"] = "oulad" if "oulad" in out else "simulator"
    return out


def _eval_file(evaluator: Any, read_events: Callable[[Path], Iterator[Any]], path: Path,
               limit: int | None) -> dict[str, Any]:
    t = time.perf_counter()
    parsed = sum(1 for _ in itertools.islice(read_events(path), limit))
    parse_s = time.perf_counter() - t
    report = evaluator.run(itertools.islice(read_events(path), limit))
    return {
        "records": parsed,
        "events": report["events"],
        "users": report["users"],
        "catalogue": report["catalogue"],
        "events_per_s": report["events_per_s"],
        "elapsed_s": report["elapsed_s"],
        "parse_events_per_s": parsed / parse_s if parse_s > 0 else None,
        "hr@10": report["recs"]["hr@10"],
        "churn_roc_auc": report["churn"]["roc_auc"],
    }


# ---------------------------------------------------------------------------------------------
# simulator traffic


def _simulate(n_events: int, seed: int) -> tuple[list[Any], list[Any]]:
    """The catalogue and the first ``n_events`` user events of a simulator run sized to hold them.

    The default platform (2000 users, 60 days) gives ~32 events per user; larger N gets more
    users over the same 60 days.
    """
    from tools.simulator import SimConfig

    users = max(2000, math.ceil(n_events / 25))
    return simulated_records(SimConfig(users=users, days=60.0, seed=seed), n_events)


def simulated_records(config: Any, limit: int | None = None) -> tuple[list[Any], list[Any]]:  # noqa: ANN401 - a SimConfig
    """The catalogue and the user events (the first ``limit``; None: all) of a simulator run."""
    from schemas.events import Course
    from tools.simulator import PlatformSimulator

    courses: list[Any] = []
    events: list[Any] = []
    for record in PlatformSimulator(config).events():
        if isinstance(record, Course):
            courses.append(record)
        else:
            events.append(record)
            if limit is not None and len(events) >= limit:
                break
    return courses, events
