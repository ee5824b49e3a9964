"""Process entry points behind the CLI: the worker, topic creation, the simulator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from streams.admin import create_topics as _create_topics
from streams.embedded import EmbeddedServices
from streams.settings import Settings

__all__ = ["create_topics", "run_simulate", "run_worker"]

log = logging.getLogger(__name__)


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _watch_stalls(app) -> None:  # noqa: ANN001 - faust.App
    """GC pause and loop-lag figures on /stats; the objects made at start-up (modules, compiled
    kernels, the app) are moved out of the collector's reach so full collections stay short."""
    import gc

    from streams.loopwatch import install_gc_metrics, watch_loop
    from streams.metrics import metrics

    install_gc_metrics(metrics)

    @app.task
    async def _loop_lag() -> None:
        await watch_loop(metrics)

    gc.collect()
    gc.freeze()


def run_worker() -> int:
    """Run a Faust worker; start the embedded broker/Redis first when none is configured."""
    settings = Settings.from_env()
    services = EmbeddedServices(settings)
    try:
        if not settings.kafka_broker or not settings.redis_url:
            settings = services.start()
            # streams.app reads the environment: hand it what the embedded launcher set
            changed = ("KAFKA_BROKER", "REDIS_URL", "COURSEPULSE_END_OFFSET_PROBE", "COURSEPULSE_RECOVERY_CONSISTENCY_CHECK")
            os.environ.update({k: v for k, v in settings.to_env().items() if k in changed})
        asyncio.run(_create_topics(settings))
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        from models.kernels import warm_up

        warm_up()  # JIT-compile (or load from cache) before the first event, not during it
        _use_uvloop()
        import faust

        from streams.app import app, load_agents

        load_agents()
        _watch_stalls(app)

        worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            from streams import health

            return health.exit_status or int(exc.code or 0)
    finally:
        services.stop()
    return 0


def create_topics() -> int:
    """Create every topic on the configured broker (``coursepulse topics``)."""
    settings = Settings.from_env()
    if not settings.kafka_broker:
        print("KAFKA_BROKER is not set: nothing to create topics on", file=sys.stderr)
        return 2
    created = asyncio.run(_create_topics(settings))
    for name in created:
        print(name)
    return 0


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
    from streams.simulator import PlatformSimulator, profile_config, write_jsonl, write_truth

    sim = PlatformSimulator(
        profile_config(getattr(args, "profile", "default"), users=args.users, courses=args.courses, days=args.days,
                       seed=args.seed, start_ms=_parse_start(args.start))
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
