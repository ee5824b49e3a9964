"""Offline evaluation of referral propensity on a simulated history: who are the natural referrers?

Replays an event file through the live referral code (``models/referrals.py``: share stats,
attribution book, :class:`ReferralModels`, the candidate rule) in one process, test-then-learn:
at each cut-off every user seen so far is ranked by the propensity the model gives *then*, from
labels resolved *before* then. The ranking is scored against the simulator's ground truth
(``truth.json``: ``is_referrer``) by precision@k, next to the "most shares so far" baseline and a
"most converted invitees, then shares" baseline, in the same run.

    python -m models.evaluation.referrals EVENTS TRUTH_DIR --out docs/referrals.md

rewrites the figures block of ``docs/referrals.md`` (between its ``referrals-eval`` markers).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from models.evaluation.metrics import average_precision, roc_auc
from models.profile import DAY_MS, UserState
from models.referrals import (
    AttributionBook,
    ReferralModels,
    course_stats_add,
    link_for,
    mark_candidate,
    record_credit,
    record_share,
    referral_stats,
)
from schemas.events import Course, Share, View

__all__ = ["ReferralEvalConfig", "ReferralReplay", "evaluate", "main", "precision_at_k", "render_markdown"]

log = logging.getLogger(__name__)
BEGIN, END = "<!-- referrals-eval:begin -->", "<!-- referrals-eval:end -->"


def precision_at_k(scores: Sequence[float], labels: Sequence[bool], k: int) -> float:
    """Expected precision of the top ``k`` by score when ties are broken at random.

    >>> precision_at_k([3, 2, 2, 0], [True, True, False, False], 2)
    0.75
    """
    if not (isinstance(k, int) and k >= 1):
        msg = f"k must be an int >= 1, got {k!r}"
        raise ValueError(msg)
    if len(scores) != len(labels):
        msg = f"scores and labels differ in length: {len(scores)} != {len(labels)}"
        raise ValueError(msg)
    k = min(k, len(scores))
    if k == 0:
        return 0.0
    groups: dict[float, list[int]] = {}
    for s, y in zip(scores, labels, strict=True):
        g = groups.setdefault(float(s), [0, 0])
        g[0] += 1
        g[1] += bool(y)
    hits, taken = 0.0, 0
    for s in sorted(groups, reverse=True):
        size, pos = groups[s]
        take = min(size, k - taken)
        hits += take * pos / size
        taken += take
        if taken == k:
            break
    return hits / k


@dataclass(frozen=True)
class ReferralEvalConfig:
    """Knobs of a run: the live defaults of the referral settings."""

    window_days: float = 30.0
    horizon_days: float = 14.0
    threshold: float = 0.3
    cooldown_days: float = 7.0
    min_examples: int = 200
    lateness_ms: int = 3_600_000
    #: cut-offs as fractions of the simulated period
    cutoffs: tuple[float, ...] = (1 / 3, 2 / 3, 1.0)
    ks: tuple[int, ...] = (10, 25, 50)
    seed: int = 0
    #: users spread over this many partitions (stable crc32 of the user id), one model and one
    #: watermark each, as live; 1 = one model learning from every user
    partitions: int = 1
    #: weight of the shared prior in labels (:class:`ReferralModels` ``prior_examples``; 0: none)
    prior_examples: int = 200


class ReferralReplay:
    """The live referral path in one process: what the ingest hook, ``referral-links`` and
    ``referral-credits`` agents do, in event order (credits arrive at once, not after two hops)."""

    def __init__(self, cfg: ReferralEvalConfig) -> None:
        if not (isinstance(cfg.partitions, int) and cfg.partitions >= 1):
            msg = f"partitions must be an int >= 1, got {cfg.partitions!r}"
            raise ValueError(msg)
        self.cfg = cfg
        self.states: dict[str, UserState] = {}
        self.book = AttributionBook({}, window_days=cfg.window_days)
        self.courses: dict[str, dict[str, Any]] = {}
        self.models = [ReferralModels(horizon_days=cfg.horizon_days, threshold=cfg.threshold,
                                      cooldown_days=cfg.cooldown_days, min_examples=cfg.min_examples, seed=cfg.seed,
                                      prior_examples=cfg.prior_examples)
                       for _ in range(cfg.partitions)]
        self.max_ts = [0] * cfg.partitions
        self.candidates: list[tuple[str, int, float, str]] = []
        self.counts: Counter[str] = Counter()
        self._partition: dict[str, int] = {}

    def partition(self, user_id: str) -> int:
        """The partition that owns ``user_id`` (a stable hash, like Kafka's partitioner)."""
        p = self._partition.get(user_id)
        if p is None:
            p = self._partition[user_id] = zlib.crc32(user_id.encode()) % self.cfg.partitions
        return p

    def model_of(self, user_id: str) -> ReferralModels:
        return self.models[self.partition(user_id)]

    def _decide(self, state: UserState, now: int) -> None:
        d = self.model_of(state.user_id).decide(state, now)
        if d is not None:
            state.referrals = mark_candidate(state.referrals, now)
            self.candidates.append((d.user_id, d.at, d.propensity, d.incentive.split(":")[0]))

    def event(self, ev: Any) -> None:
        """One input event, as the live pipeline handles it."""
        if isinstance(ev, Course):
            return
        state = self.states.get(ev.user_id) or self.states.setdefault(ev.user_id, UserState(ev.user_id))
        if not state.apply(ev):
            self.counts["duplicates"] += 1
            return
        part = self.partition(ev.user_id)
        rm = self.models[part]
        if isinstance(ev, Share):  # the ingest hook (agents/score_referrals.on_user_event)
            state.referrals = record_share(state.referrals, ev.channel, ev.ts)
        rm.observe(state, ev.ts)
        if rm.check_due(state.user_id, ev.ts, force=not isinstance(ev, View)):
            self._decide(state, max(ev.ts, state.last_ts))
        link = link_for(ev)
        if link is not None:  # referral-links (agents/attribute_referrals)
            result = self.book.apply(link)
            self.counts.update({"unknown": result.unknown, "credited": result.credited, "self": result.self_referral,
                                "outside_window": result.outside_window, "link_duplicates": result.duplicate})
            if result.course_id is not None and (result.new_share or result.credited):
                self.courses[result.course_id] = course_stats_add(
                    self.courses.get(result.course_id), int(result.new_share), result.credited, result.credited_revenue)
            for credit in result.credits:
                self._credit(credit)
        if ev.ts > self.max_ts[part]:  # the partition's watermark
            self.max_ts[part] = ev.ts
            rm.advance(ev.ts - self.cfg.lateness_ms)

    def _credit(self, credit: dict[str, Any]) -> None:
        """referral-credits (agents/score_referrals): the sharer's stats, a label, the candidate rule."""
        state = self.states[credit["sharer"]]
        state.referrals, applied = record_credit(state.referrals, credit)
        if applied and credit["credited"]:
            self.model_of(state.user_id).on_credit(state, credit["ts"])
            self._decide(state, max(credit["ts"], state.last_ts))

    def scores(self, now: int) -> dict[str, tuple[float, int, int]]:
        """user_id -> (propensity at ``now``, shares, converted invitees), from what came before."""
        out = {}
        for uid, state in self.states.items():
            stats = referral_stats(state.referrals)
            out[uid] = (self.model_of(uid).propensity(state, now), stats["shares"], stats["converted_invitees"])
        return out


def _rank_figures(scored: dict[str, tuple[float, int, int]], truth: dict[str, bool],
                  ks: Iterable[int]) -> dict[str, Any]:
    users = sorted(scored)
    labels = [truth.get(u, False) for u in users]
    n_pos = sum(labels)
    rankers = {
        "model": [scored[u][0] for u in users],
        "most_shares": [float(scored[u][1]) for u in users],
        "most_conversions_then_shares": [scored[u][2] * 1e6 + scored[u][1] for u in users],
    }
    ks = [*ks, n_pos] if n_pos else list(ks)
    out: dict[str, Any] = {"users": len(users), "referrers": n_pos, "ks": ks}
    for name, s in rankers.items():
        out[name] = {
            "precision": {str(k): round(precision_at_k(s, labels, k), 4) for k in ks},
            "auc": None if (a := roc_auc(labels, s)) is None else round(a, 4),
            "average_precision": None if (ap := average_precision(labels, s)) is None else round(ap, 4),
        }
    return out


def evaluate(events: Iterable[Any], truth: Any, cfg: ReferralEvalConfig | None = None) -> dict[str, Any]:
    """Replay ``events`` (in event-time order) and score the rankings at the cut-offs."""
    cfg = cfg or ReferralEvalConfig()
    is_ref = {u: t.is_referrer for u, t in truth.users.items()}
    start, end = truth.start_ms, truth.end_ms
    cuts = sorted(start + int(f * (end - start)) for f in cfg.cutoffs)
    replay = ReferralReplay(cfg)
    results: list[dict[str, Any]] = []
    started, n = time.perf_counter(), 0

    def cut(at: int) -> None:
        fig = _rank_figures(replay.scores(at), is_ref, cfg.ks)
        fig["day"] = round((at - start) / DAY_MS, 1)
        fig["labels_learned"] = sum(m.positives + m.negatives for m in replay.models)
        results.append(fig)
        log.info("day %.0f: model P@%d=%.3f, most shares %.3f", fig["day"], fig["ks"][-1],
                 fig["model"]["precision"][str(fig["ks"][-1])], fig["most_shares"]["precision"][str(fig["ks"][-1])])

    for ev in events:
        ts = getattr(ev, "ts", None) or 0
        while cuts and ts >= cuts[0] and not isinstance(ev, Course):
            cut(cuts.pop(0))
        replay.event(ev)
        n += 1
    for at in cuts:
        cut(at)
    models = replay.models
    cands = replay.candidates
    cand_users = {c[0] for c in cands}
    by_tier: dict[str, list[int]] = {}
    for uid, _, _, tier in cands:
        t = by_tier.setdefault(tier, [0, 0])
        t[0] += 1
        t[1] += is_ref.get(uid, False)
    return {
        "config": asdict(cfg),
        "events": n,
        "seconds": round(time.perf_counter() - started, 1),
        "users": len(replay.states),
        "true_referrers": sum(is_ref.get(u, False) for u in replay.states),
        "attribution": dict(replay.counts),
        "model": {"labels": sum(m.positives + m.negatives for m in models), "positives": sum(m.positives for m in models),
                  "prequential_auc": round(sum(float(m.metric.get()) for m in models) / len(models), 4),
                  "partitions": len(models), "ready": sum(m.ready for m in models)},
        "candidates": {"messages": len(cands), "users": len(cand_users),
                       "precision_users": round(sum(is_ref.get(u, False) for u in cand_users) / len(cand_users), 4)
                       if cand_users else None,
                       "by_tier": {t: {"messages": m, "true_referrers": r} for t, (m, r) in sorted(by_tier.items())}},
        "top_courses": sorted(({"course_id": c, **v} for c, v in replay.courses.items()),
                              key=lambda c: -c["conversions"])[:5],
        "cutoffs": results,
    }


def render_markdown(result: dict[str, Any], command: str, by_partitions: Sequence[dict[str, Any]] = ()) -> str:
    """The figures block of docs/referrals.md; ``by_partitions``: more runs, one per partition count."""
    lines = [BEGIN, "", f"Regenerate with `{command}`.", "",
             f"{result['events']} events, {result['users']} users of whom {result['true_referrers']} are natural "
             f"referrers (simulator truth); replay took {result['seconds']} s; shared prior weight "
             f"{result['config'].get('prior_examples', 0)} labels (0: none).", ""]
    for fig in result["cutoffs"]:
        ks = fig["ks"]
        head = " | ".join(f"P@{k}" if i < len(ks) - 1 or len(ks) == 1 else f"P@{k} (= #referrers)" for i, k in enumerate(ks))
        lines += [f"**Day {fig['day']:g}** — {fig['users']} users seen, {fig['referrers']} true referrers among them, "
                  f"{fig['labels_learned']} labels learned so far.", "",
                  f"| ranking | {head} | ROC AUC | avg precision |",
                  "|---|" + "---:|" * (len(ks) + 2)]
        for name, label in (("model", "referral propensity (ReferralModels)"), ("most_shares", "baseline: most shares so far"),
                            ("most_conversions_then_shares", "baseline: most converted invitees, then shares")):
            r = fig[name]
            cells = " | ".join(f"{r['precision'][str(k)]:.3f}" for k in ks)
            lines.append(f"| {label} | {cells} | {r['auc']} | {r['average_precision']} |")
        lines.append("")
    a, m, c = result["attribution"], result["model"], result["candidates"]
    lines += [f"Attribution: {a.get('credited', 0)} conversions credited, {a.get('outside_window', 0)} outside the "
              f"window, {a.get('unknown', 0)} with an unknown share id, {a.get('self', 0)} self-referrals. "
              f"Model: {m['labels']} delayed labels learned ({m['positives']} positive), prequential ROC AUC "
              f"{m['prequential_auc']} on its own label (a converting invitee within the horizon).", "",
              f"Candidates (threshold {result['config']['threshold']}, cool-down {result['config']['cooldown_days']:g} "
              f"days): {c['messages']} messages to {c['users']} users, {c['precision_users']} of those users true "
              f"referrers; by tier: " + ", ".join(f"{t} {v['messages']} ({v['true_referrers']} to true referrers)"
                                                  for t, v in c["by_tier"].items()) + ".", ""]
    if by_partitions:
        fig0 = by_partitions[0]["cutoffs"][-1]
        ks = fig0["ks"]
        lines += [f"**One model per partition** (as live; users spread by a stable hash), day {fig0['day']:g}:", "",
                  "| partitions | models ready | labels per model | " + " | ".join(f"P@{k}" for k in ks)
                  + " | ROC AUC | candidates (share to true referrers) |",
                  "|---:|---:|---:|" + "---:|" * (len(ks) + 2)]
        for r in by_partitions:
            fig, m, c = r["cutoffs"][-1], r["model"], r["candidates"]
            cells = " | ".join(f"{fig['model']['precision'][str(k)]:.3f}" for k in ks)
            lines.append(f"| {m['partitions']} | {m['ready']} | {m['labels'] // m['partitions']} | {cells} | "
                         f"{fig['model']['auc']} | {c['messages']} ({c['precision_users']}) |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _write_block(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else f"# Referrals\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.evaluation.referrals EVENTS TRUTH_DIR [--out docs/referrals.md] [--json F]``."""
    from models.datasets.truth import read_truth
    from schemas.eventfile import read_events

    p = argparse.ArgumentParser(prog="python -m models.evaluation.referrals", description=__doc__.splitlines()[0])
    p.add_argument("events", type=Path, help="event file (JSON Lines, event-time order)")
    p.add_argument("truth_dir", type=Path, help="directory of the simulator's truth.json")
    p.add_argument("--out", type=Path, help="markdown file whose figures block is rewritten")
    p.add_argument("--json", type=Path, help="write the full result as JSON")
    p.add_argument("--min-examples", type=int, default=ReferralEvalConfig.min_examples)
    p.add_argument("--threshold", type=float, default=ReferralEvalConfig.threshold)
    p.add_argument("--prior-examples", type=int, default=ReferralEvalConfig.prior_examples,
                   help="weight of the shared prior in labels (0: no prior, the behaviour before it)")
    p.add_argument("--partitions", default="4,12",
                   help="comma-separated partition counts to compare with the one-model run ('' for none)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("models.churn").setLevel(logging.WARNING)  # drift notes of every model
    cfg = ReferralEvalConfig(min_examples=args.min_examples, threshold=args.threshold,
                             prior_examples=args.prior_examples)
    truth = read_truth(args.truth_dir)
    result = evaluate(read_events(args.events), truth, cfg)
    counts = [int(x) for x in args.partitions.split(",") if x.strip()]
    by_partitions = [evaluate(read_events(args.events), truth, replace(cfg, partitions=n)) for n in counts]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({**result, "by_partitions": by_partitions}, option=orjson.OPT_INDENT_2))
    command = "python -m models.evaluation.referrals " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    block = render_markdown(result, command, by_partitions)
    if args.out:
        _write_block(args.out, block)
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(block + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
