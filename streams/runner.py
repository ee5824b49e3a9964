"""Process entry points behind the CLI: the worker and topic creation."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from streams.admin import create_topics as _create_topics
from streams.embedded import EmbeddedServices
from streams.settings import Settings

__all__ = ["create_topics", "run_worker"]

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
        asyncio.run(_create_topics(settings))
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        from models.kernels import warm_up

        warm_up()  # JIT-compile (or load from cache) before the first event, not during it
        _use_uvloop()
        import faust

        from streams.app import configure, get_app, install_patches, load_agents

        configure(settings)  # the default app is built from these (embedded broker included)
        install_patches(settings)
        load_agents()
        app = get_app()
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
