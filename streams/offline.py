"""``coursepulse eval`` and ``coursepulse replay``: event files through the models or to Kafka."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from schemas.base import parse_ts
from schemas.eventfile import read_events, read_labels
from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings

__all__ = ["run_eval", "run_replay"]

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
    from streams.partition_models import new_partition_models, step_config
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

    def models_factory(partition: int) -> Any:
        return new_partition_models(partition, settings, rules, horizon_days=horizon_days, threshold=threshold,
                                    seed=seed, self_supervised=self_supervised)

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


def run_replay(args: argparse.Namespace) -> int:
    """Produce the file to the topics in event-time order, ``--speed`` times real time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.admin import create_topics
    from streams.producer import to_wire

    settings = Settings.from_env()
    if not settings.kafka_broker:
        print("KAFKA_BROKER is not set: start `coursepulse worker` or `coursepulse demo` first and point "
              "KAFKA_BROKER at it", file=sys.stderr)
        return 2
    total = sum(1 for _ in open(args.events, "rb"))
    if args.limit:
        total = min(total, args.limit)

    async def replay() -> int:
        from aiokafka import AIOKafkaProducer

        await create_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=10,
                                    max_request_size=1_048_576)
        await producer.start()
        sent = 0
        first_ts = None
        started = time.monotonic()
        try:
            with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                          TextColumn("{task.fields[rate]:,.0f} ev/s"), TimeElapsedColumn()) as progress:
                task = progress.add_task("replay", total=total, rate=0.0)
                for record in read_events(args.events):
                    ts = getattr(record, "ts", None) or getattr(record, "published_at", 0)
                    if args.speed > 0:
                        first_ts = ts if first_ts is None else first_ts
                        due = started + (ts - first_ts) / 1000 / args.speed
                        delay = due - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    topic, key, value = to_wire(record)
                    await producer.send(settings.topic(topic), key=key, value=value)
                    sent += 1
                    if sent % 500 == 0 or sent == total:
                        progress.update(task, completed=sent, rate=sent / max(time.monotonic() - started, 1e-9))
                        await asyncio.sleep(0)
                    if args.limit and sent >= args.limit:
                        break
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    sent = asyncio.run(replay())
    print(f"replayed {sent} records to {settings.kafka_broker}")
    return 0
