"""``coursepulse eval``: an event file through the models, test-then-learn, without Kafka, and a report."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from schemas.base import parse_ts
from schemas.eventfile import read_events, read_labels
from streams.settings import Settings

__all__ = ["build_evaluator", "run_eval"]

log = logging.getLogger(__name__)


def build_evaluator(settings: Settings, *, horizon_days: float | None = None, as_of: int | None = None,
                    rec_interval_s: float = 0.0, alert_threshold: float | None = None, seed: int = 0,
                    similarity: str | None = None, mf_weight: float = 0.0, partitions: int | None = None,
                    labels: dict[str, int | None] | None = None) -> Any:
    """The evaluator ``coursepulse eval`` runs: the worker's step, batches, partitions, models
    and ranker, all from ``settings``; the arguments are eval's named departures from them."""
    from models.evaluation import EvalConfig, PrequentialEvaluator
    from models.profile import SegmentRules
    from models.recommend import OnlineRecommender, Ranker
    from streams.partition_models import new_partition_models, new_shared_model, step_config
    from streams.partitioning import partition_for

    rules = SegmentRules()
    partitions = partitions or settings.partitions
    horizon_days = settings.churn_horizon_days if horizon_days is None else horizon_days
    threshold = settings.churn_threshold if alert_threshold is None else alert_threshold
    config = EvalConfig(horizon_days=horizon_days, as_of=as_of, rec_interval_ms=int(rec_interval_s * 1000),
                        alert_threshold=threshold, seed=seed, batch_events=settings.ingest_batch,
                        batch_window_ms=int(settings.ingest_batch_within_s * 1000),
                        neighbours_refresh_ms=int(settings.neighbours_refresh_s * 1000), partitions=partitions,
                        step=step_config(settings, rules))
    self_supervised = not (labels is not None and config.learn_from_labels)
    shared = new_shared_model(settings)  # the partitions publish to it at once (the worker: via churn-model)

    def models_factory(partition: int) -> Any:
        return new_partition_models(partition, settings, rules, horizon_days=horizon_days, threshold=threshold,
                                    seed=seed, self_supervised=self_supervised, shared=shared)

    recommender = OnlineRecommender(k=settings.neighbours_k, measure=similarity or settings.similarity,
                                    half_life_days=settings.half_life_days, mf_weight=mf_weight, seed=seed,
                                    ranker=Ranker(n=settings.rec_n, completion=rules.completion))
    return PrequentialEvaluator(config, recommender=recommender, labels=labels,
                                partition_of=lambda user: partition_for(user.encode(), partitions),
                                models_factory=models_factory)


def run_eval(args: argparse.Namespace) -> int:
    """Replay the file test-then-learn without Kafka and write the report."""
    from models.evaluation.report import write_report

    labels = read_labels(args.labels) if args.labels else None
    evaluator = build_evaluator(Settings.from_env(), horizon_days=args.horizon_days,
                                as_of=parse_ts(args.as_of, "--as-of") if args.as_of else None,
                                rec_interval_s=args.rec_interval_s, alert_threshold=args.alert_threshold,
                                seed=args.seed, similarity=args.similarity, mf_weight=args.mf_weight,
                                partitions=args.partitions, labels=labels)
    report = evaluator.run(read_events(args.events))
    report["source"] = {"events": str(args.events), "labels": str(args.labels) if args.labels else None}
    paths = write_report(evaluator, report, args.report, title=args.title or f"CoursePulse evaluation: {args.events.name}")
    print(json.dumps({k: report[k] for k in ("recs", "churn", "events", "events_per_s")}, indent=2))
    for p in paths:
        print(p)
    return 0

