"""``coursepulse simulate``: simulated platform traffic to a JSON Lines file (and its ground truth), or to the topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from streams.admin import create_topics as _create_topics
from streams.settings import Settings

__all__ = ["run_simulate"]


def _parse_start(text: str | None) -> int | None:
    """``--start`` as epoch millis: ISO-8601 date or date-time; UTC when no offset is given."""
    if text is None:
        return None
    from schemas.base import parse_ts

    if len(text) == 10:  # a date alone
        text += "T00:00:00"
    if not (text.endswith(("Z", "z")) or "+" in text[10:] or "-" in text[10:]):
        text += "+00:00"
    return parse_ts(text, "--start")


def run_simulate(args: argparse.Namespace) -> int:
    """``coursepulse simulate``: to a JSON Lines file (and ground truth), or to the topics."""
    from tools.simulator import PlatformSimulator, SimConfig, write_jsonl, write_truth

    sim = PlatformSimulator(
        SimConfig(users=args.users, courses=args.courses, days=args.days, seed=args.seed,
                  start_ms=_parse_start(args.start))
    )
    if args.out is not None:
        n = write_jsonl(sim.events(), args.out)
        print(f"wrote {n} events to {args.out}")
        if args.truth_dir is not None:
            write_truth(sim.truth(), args.truth_dir)
            print(f"wrote ground truth to {args.truth_dir}")
        return 0
    settings = Settings.from_env()
    if not settings.kafka_broker:
        print("KAFKA_BROKER is not set: use --out FILE, or `coursepulse demo` for the embedded broker",
              file=sys.stderr)
        return 2
    from streams.producer import produce

    asyncio.run(_create_topics(settings))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    stats = asyncio.run(
        produce(settings, sim.events(), rate=args.rate, duration=args.duration,
                bad_fraction=args.bad_fraction, seed=args.seed)
    )
    print(f"{started}: sent {stats.total} records {stats.as_dict()}")
    if args.truth_dir is not None:
        write_truth(sim.truth(), args.truth_dir)
    return 0
