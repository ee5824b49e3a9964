"""(f) Each Numba kernel against its NumPy reference, and pure Python at one size, at the pipeline's sizes."""

from __future__ import annotations

import logging
import math
import timeit
from collections.abc import Callable
from typing import Any

from tools.bench.config import (
    BATCH_SIM_EVENTS,
    CATALOGUE_SIZES,
    PAIR_SIZES,
    PURE_PYTHON_SIZES,
    RECENT_ITEMS,
    ROW_SIZES,
    SMALL_INGEST_BATCH,
    SYNTHETIC_TICK,
    TICK_EVENTS,
    TOP_K,
    USERS_PER_CALL,
)
from tools.bench.evaluation import _simulate

log = logging.getLogger(__name__)

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

    Simulator events are folded by the worker's own step (:func:`models.step.step`, one partition
    so a kernel call sees the whole batch) in batches of ``ingest_batch`` events, and of
    ``small_batch`` events (a 20 ms batch at 25 % load); the ``ingest_batch`` run's merged row
    updates are applied to co-occurrence rows (30-day half-life, as the worker), and every
    ``tick_events[i]`` events the rows changed since the last tick are put in CSR form as
    ``publish_neighbours`` does. Returns per tick rate and batch size the size distribution and
    the kernel inputs of the median batch of the second half of the run (rows have grown by then).
    """
    import numpy as np

    from models.profile import PartitionStats, UserState
    from models.recommend import CooccurrenceRows, rows_csr
    from models.referrals import ReferralModels
    from models.retention import RetentionModels
    from models.step import PartitionModels, StepConfig, step

    _, events = _simulate(n_events, seed)
    rows = CooccurrenceRows(30.0)
    dirty: dict[int, set[str]] = {t: set() for t in tick_events}
    ticks: dict[int, list[tuple[int, int, Any]]] = {t: [] for t in tick_events}  # (rows, nnz, csr)
    # (rises, pairs, (pair_increments_batch inputs, cooc_gains_batch inputs, courses in the batch))
    batches: dict[int, list[tuple[int, int, Any]]] = {ingest_batch: [], small_batch: []}
    for b in batches:
        states: dict[str, UserState | None] = {}
        models = PartitionModels(0, PartitionStats(), RetentionModels(), ReferralModels())
        for start in range(0, len(events), b):
            chunk = events[start:start + b]
            result = step(chunk, states, models, StepConfig())
            for o in result.users:
                states[o.user_id] = o.state
            rises = result.rises
            if len(chunk) == b:  # full batches only
                inputs = rises.kernel_inputs()
                batches[b].append((len(rises), int(inputs[3].size), (inputs, rises.gains_inputs(), len(rises.names))))
            if b != ingest_batch:
                continue
            updates = rises.merged_updates(rows._hl_ms)
            for n in range(start + 1, start + len(chunk) + 1):
                if n == start + len(chunk):  # the batch's updates reach the rows when it ends
                    for update in updates:
                        rows.apply(update)
                        for d in dirty.values():
                            d.add(update.course_id)
                for t, d in dirty.items():
                    if n % t == 0 and d:
                        now = events[n - 1].ts
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


def _users_for_ranking(rng: Any, n_items: int, users: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The inputs of :func:`models.kernels.rank_users` for ``users`` users of 30 distinct courses
    each (ranked on their RECENT_ITEMS most recent), two popularity rows, 12 categories."""
    import numpy as np

    neigh_idx, neigh_sim, _, _ = _user_and_neighbours(rng, n_items)
    now = 1_767_225_600_000
    per_user = min(30, n_items)
    c_idx = np.concatenate([rng.choice(n_items, size=per_user, replace=False) for _ in range(users)]).astype(np.int64)
    total = c_idx.size
    u_off = np.arange(0, total + 1, per_user, dtype=np.int64)
    c_ts = now - rng.integers(0, 60 * 86_400_000, total).astype(np.int64)
    c_prog = rng.random(total)
    c_bought = rng.random(total) < 0.1
    pop = rng.exponential(1.0, (2, n_items))
    pop_norm = pop / pop.max(axis=1, keepdims=True)
    published = now - rng.integers(-2, 400, n_items).astype(np.int64) * 86_400_000
    args = (u_off, c_idx, c_ts, c_prog, c_bought, u_off, c_idx, np.full(users, now, dtype=np.int64),
            (np.arange(users) % 2).astype(np.int64), pop_norm, 0.02 * pop_norm, neigh_idx, neigh_sim, n_items,
            rng.integers(-1, 12, n_items).astype(np.int64), 12, published)
    kw = {"max_history": RECENT_ITEMS, "half_life_ms": 7 * 86_400_000.0, "completion": 0.9,
          "level_weights": np.array([0.0, 1.0, 2.0, 3.0]), "new_ms": 14 * 86_400_000.0, "w_similar": 1.0,
          "w_popular": 0.15, "w_new": 0.25, "k": 40, "n": 10, "per_category": 4}
    return args, kw


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

    # rank_users: the lists a batch owes, ranked in one call (rank_candidates inside, per user)
    # for USERS_PER_CALL users of 30 courses (20 recent) into catalogues of n_items
    per_call = []
    for n_items in CATALOGUE_SIZES:
        for users in USERS_PER_CALL:
            args, kw = _users_for_ranking(rng, n_items, users)
            core_args = (*args, kw["max_history"], kw["half_life_ms"], kw["completion"], kw["level_weights"],
                         kw["new_ms"], kw["w_similar"], kw["w_popular"], kw["w_new"], kw["k"], kw["n"],
                         kw["per_category"])
            fig = timed(
                lambda a=args, kw=kw: K.rank_users(*a, **kw),
                lambda a=core_args: K._rank_users(*a),
                lambda a=args, kw=kw: K.rank_users_numpy(*a, **kw),
            )
            per_call.append({"n_items": n_items, "users": users, "recent": RECENT_ITEMS,
                             "kernel_us_per_user": fig["kernel_us"] / users, **fig})
    out["rank_users"] = {"k": TOP_K, "recent": RECENT_ITEMS, "top": 40, "sizes": per_call,
                         "min_speedup": min(r["speedup"] for r in per_call)}

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
        "rank_users": "models.recommend.Ranker.recommend_many: once per batch, every list it owes "
                      "(rank_candidates inside, per user)",
    }
    size_keys = {"row_similarities": "n", "score_candidates": "n_items", "rank_candidates": "n_items",
                 "rank_users": "users",
                 "pair_increments": "n",
                 "row_similarities_batch": "entries", "pair_increments_batch": "pairs", "cooc_gains_batch": "pairs"}
    worst = min(((name, r) for name in pipeline for r in out[name]["sizes"]), key=lambda nr: nr[1]["speedup"])
    size_key = size_keys[worst[0]]
    out["pure_python"] = python
    out["pipeline_kernels"] = pipeline
    out["not_in_min"] = {
        "row_similarities": "one row per call: CooccurrenceRows.neighbours, no longer on a per-tick path",
        "score_candidates": "called inside rank_candidates (the ranker's fused scoring), not on its own",
        "rank_candidates": "called inside rank_users, once per user of the call",
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
