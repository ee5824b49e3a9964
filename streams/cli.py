"""The ``coursepulse`` command line: worker, demo, simulator, schemas, topics, dead letters."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (also used by tests of deploy/ files)."""
    parser = argparse.ArgumentParser(prog="coursepulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a stream-processing worker (embedded broker/Redis when none is configured)")

    demo = sub.add_parser("demo", help="broker, Redis, workers, simulated traffic and a live view")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--headless", action="store_true", help="no live view; log a line every few seconds")
    demo.add_argument("--summary-json", type=Path, default=None, help="write a JSON summary of the run here")
    demo.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    demo.add_argument("--rate", type=float, default=300.0, help="simulated events per second (default 300)")
    demo.add_argument("--users", type=int, default=2000, help="simulated users (default 2000)")
    demo.add_argument("--days", type=float, default=60.0, help="simulated days of history (default 60)")
    demo.add_argument("--bad-fraction", type=float, default=0.01, help="share of malformed or repeated records injected (default 0.01)")
    demo.add_argument("--seed", type=int, default=7)

    sim = sub.add_parser("simulate", help="simulate a course platform: to a JSON Lines file or to the topics")
    sim.add_argument("--users", type=int, default=2000)
    sim.add_argument("--courses", type=int, default=None, help="courses (default: the profile's, 120)")
    sim.add_argument("--profile", default="default", choices=["default", "small-popular", "binge-large", "mooc"],
                     help="platform shape (default: the paid-course platform; see README, \"The simulator\")")
    sim.add_argument("--days", type=float, default=60.0)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--start", default=None, help="start of simulated time, ISO-8601 (default: now - days)")
    sim.add_argument("--out", type=Path, default=None, help="write events here (JSON Lines) instead of to Kafka")
    sim.add_argument("--truth-dir", type=Path, default=None, help="write ground truth (truth.json, labels.csv) here")
    sim.add_argument("--rate", type=float, default=0.0, help="events/s when producing to Kafka (0: as fast as possible)")
    sim.add_argument("--duration", type=float, default=None, help="stop producing after this many seconds")
    sim.add_argument("--bad-fraction", type=float, default=0.0, help="share of malformed or repeated records injected")

    sch = sub.add_parser("schemas", help="write a JSON Schema document per topic")
    sch.add_argument("--out", type=Path, required=True)

    sub.add_parser("topics", help="create every topic with its partition count (idempotent)")

    ev = sub.add_parser("eval", help="replay an event file through the models, test-then-learn, and report")
    ev.add_argument("events", type=Path, help="event file (JSON Lines)")
    ev.add_argument("--labels", type=Path, default=None, help="CSV user_id,churned_at (ground truth for churn)")
    ev.add_argument("--horizon-days", type=float, default=14.0, help="churn horizon H (default 14)")
    ev.add_argument("--as-of", default=None, help="also report the AUC of every user's risk as of this time")
    ev.add_argument("--report", type=Path, required=True, help="folder for report.json, report.md and plots")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--rec-interval-s", type=float, default=0.0,
                    help="rank a user's list at most once per this much event time (default 0: after every batch "
                         "that touched the user, as the worker does)")
    ev.add_argument("--partitions", type=int, default=None,
                    help="partitions, each with its own models as on the workers (default COURSEPULSE_PARTITIONS)")
    ev.add_argument("--similarity", default="cosine", choices=["cosine", "jaccard", "lift"])
    ev.add_argument("--title", default=None, help="title of report.md")
    ev.add_argument("--alert-threshold", type=float, default=0.5, help="churn alert threshold (default 0.5)")
    ev.add_argument("--mf-weight", type=float, default=0.0,
                    help="weight of a River matrix-factorisation second scorer (0: off, as in the workers)")

    rp = sub.add_parser("replay", help="produce an event file to the topics in event-time order")
    rp.add_argument("events", type=Path)
    rp.add_argument("--speed", type=float, default=0.0, help="times faster than real time (0: as fast as possible)")
    rp.add_argument("--limit", type=int, default=None, help="stop after this many records")

    ds = sub.add_parser("datasets", help="convert a public dataset to an event file")
    ds.add_argument("name", choices=["oulad"])
    ds.add_argument("src", type=Path, help="folder of the dataset's files")
    ds.add_argument("--out", type=Path, required=True)
    ds.add_argument("--limit-rows", type=int, default=None, help="convert only the first N click rows")

    bn = sub.add_parser("bench", help="benchmark: Kafka/Faust/pipeline throughput, latency, kernels, eval, memory")
    bn.add_argument("--json", type=Path, required=True, dest="json_out", help="write every figure here (JSON)")
    bn.add_argument("--events", type=int, default=None, help="simulator events per throughput run (default 30000; 3000 with --quick)")
    bn.add_argument("--quick", action="store_true", help="small N; no two-worker run, no OULAD, no profile")
    bn.add_argument("--oulad", type=Path, default=None, help="OULAD event file for (g) (default /tmp/oulad/events.jsonl when present)")
    bn.add_argument("--oulad-events", type=int, default=None, help="records of the OULAD file to evaluate (default 200000; 0: all)")
    bn.add_argument("--plot", type=Path, default=None, help="throughput/latency plot (default: the JSON path with .png)")
    bn.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of a worker")
    bn.add_argument("--profile-raw", type=Path, default=None, help="keep py-spy's raw profile here")
    bn.add_argument("--latency-at", default=None, metavar="RATES",
                    help="only (e): one worker's latency at these offered rates, ev/s, comma-separated (e.g. 300,600)")
    dq = sub.add_parser("dlq", help="list dead letters, or re-send them to their source topic (idempotent)")
    dq_sub = dq.add_subparsers(dest="dlq_command", required=True)
    for name, text in (("list", "list the dead letters of events-dlq"),
                       ("redrive", "re-send the original bytes of dead letters to their source topic")):
        p = dq_sub.add_parser(name, help=text)
        p.add_argument("--kind", action="append", default=None,
                       help="only this error kind (decode, validation, key_mismatch, too_large, wrong_partition, internal); repeatable")
        p.add_argument("--since", default=None, help="only dead letters since: 30m, 2h, 1d (ago), epoch ms, or ISO-8601 with an offset")
        p.add_argument("--json", action="store_true", help="JSON Lines output")
        if name == "redrive":
            p.add_argument("--fix-key", action="store_true", help="key each record by the user_id in its payload (mis-keyed producers)")
            p.add_argument("--dry-run", action="store_true", help="say what would be re-sent; send nothing")
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
    sk = sub.add_parser("soak", help="one worker under steady simulated traffic for minutes; its memory sampled (a report)")
    sk.add_argument("--json", type=Path, required=True, dest="json_out", help="write the report here (JSON)")
    sk.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    sk.add_argument("--load", type=float, default=0.5, help="share of the calibrated sustainable rate (default 0.5)")
    sk.add_argument("--rate", type=float, default=None, help="events/s instead of calibrating")
    sk.add_argument("--users", type=int, default=3000, help="simulated users (default 3000)")
    sk.add_argument("--warmup", type=float, default=None,
                    help="seconds of traffic before the measured --duration (default: none; the first sixth of the run is the warm-up)")
    sk.add_argument("--linger-ms", type=int, default=100,
                    help="the traffic producer's linger (default 100: batches of a few records, as an emitting service sends)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coursepulse`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "schemas":
        from schemas.jsonschema import write_schemas

        for path in write_schemas(args.out):
            print(path)
        return 0
    if args.command == "worker":
        from streams.runner import run_worker

        return run_worker()
    if args.command == "topics":
        from streams.runner import create_topics

        return create_topics()
    if args.command == "simulate":
        from tools.simulator.command import run_simulate

        return run_simulate(args)
    if args.command == "eval":
        from tools.evaluate import run_eval

        return run_eval(args)
    if args.command == "replay":
        from tools.replay import run_replay

        return run_replay(args)
    if args.command == "datasets":
        from models.datasets.oulad import convert_oulad

        summary = convert_oulad(args.src, args.out, limit_rows=args.limit_rows)
        print(f"wrote {args.out}/events.jsonl and labels.csv: {summary.get('counts', summary)}")
        return 0
    if args.command == "bench":
        from rich.console import Console
        from rich.table import Table

        from tools.bench import BenchConfig, run_bench, table_rows

        config = BenchConfig.create(
            events=args.events, quick=args.quick, json_out=args.json_out, oulad=args.oulad,
            oulad_events=args.oulad_events, profile=False if args.no_profile else None,
            profile_raw=args.profile_raw, plot_out=args.plot or args.json_out.with_suffix(".png"),
            latency_rates=tuple(float(r) for r in args.latency_at.split(",")) if args.latency_at else None,
        )
        try:
            result = run_bench(config)
        except KeyboardInterrupt:
            return 130
        table = Table(title=f"coursepulse bench ({result['duration_s']:.0f} s): {args.json_out}")
        for column in ("part", "figure", "value"):
            table.add_column(column)
        for row in table_rows(result):
            table.add_row(*row)
        Console().print(table)
        return 1 if result["errors"] else 0
    if args.command == "soak":
        import asyncio

        from streams.settings import Settings
        from tools.soak import SoakConfig, run_soak

        config = SoakConfig(duration_s=args.duration, load=args.load, rate=args.rate, users=args.users,
                            warmup_s=args.warmup, linger_ms=args.linger_ms)
        report = asyncio.run(run_soak(config, Settings.from_env(), args.json_out))
        print({k: v for k, v in report.items() if k not in ("samples", "config")})
        return 0 if report["worker_exit"] in (0, None) else 1
    if args.command == "dlq":
        from streams.dlq import run_dlq

        return run_dlq(args)
    if args.command == "demo":
        from tools.demo import run_demo

        return run_demo(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
