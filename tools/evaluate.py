"""``coursepulse eval``: an event file through the models, test-then-learn, without Kafka, and a report."""

from __future__ import annotations

import argparse
import json
import logging

from schemas.base import parse_ts
from schemas.eventfile import read_events, read_labels

__all__ = ["run_eval"]

log = logging.getLogger(__name__)


def run_eval(args: argparse.Namespace) -> int:
    """Replay the file test-then-learn without Kafka and write the report."""
    from models.evaluation import EvalConfig, PrequentialEvaluator
    from models.evaluation.report import write_report
    from models.recommend import OnlineRecommender

    labels = read_labels(args.labels) if args.labels else None
    config = EvalConfig(horizon_days=args.horizon_days, as_of=parse_ts(args.as_of, "--as-of") if args.as_of else None,
                        rec_interval_ms=int(args.rec_interval_s * 1000), alert_threshold=args.alert_threshold,
                        seed=args.seed)
    evaluator = PrequentialEvaluator(config, recommender=OnlineRecommender(measure=args.similarity, mf_weight=args.mf_weight, seed=args.seed), labels=labels)
    report = evaluator.run(read_events(args.events))
    report["source"] = {"events": str(args.events), "labels": str(args.labels) if args.labels else None}
    paths = write_report(evaluator, report, args.report, title=args.title or f"CoursePulse evaluation: {args.events.name}")
    print(json.dumps({k: report[k] for k in ("recs", "churn", "events", "events_per_s")}, indent=2))
    for p in paths:
        print(p)
    return 0
