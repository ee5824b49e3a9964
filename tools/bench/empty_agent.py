"""The empty-agent baseline of ``coursepulse bench``: the project's Faust app, one agent that only counts.

Run by the benchmark as ``python -m tools.bench.empty_agent`` with the settings' environment (its
own topic prefix and app id) and two more variables:

- ``COURSEPULSE_BENCH_PROGRESS``: a JSON file this process rewrites (atomically) every 0.25 s and
  when the last expected event arrives: ``{"n", "first", "last", "pid"}`` (wall-clock seconds);
- ``COURSEPULSE_BENCH_EXPECTED``: how many events make "the last one".

It is the very default ``faust.App`` of :mod:`streams.app` (same broker URL, partitions, session timeout
and heartbeat, serializers, producer and stream settings) iterating the very topic object the
ingest agent reads (:data:`streams.topics.user_events`, ``stream.events()``), under uvloop like
``coursepulse worker``: the only difference from the pipeline is the agent's body.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import orjson

__all__ = ["main"]


def main() -> int:
    """Run the counting worker until SIGTERM; return the exit code."""
    progress = Path(os.environ["COURSEPULSE_BENCH_PROGRESS"])
    expected = int(os.environ["COURSEPULSE_BENCH_EXPECTED"])
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - optional speed-up, as in streams.runner
        pass
    import faust

    from streams.app import app, install_patches, settings
    from streams.topics import user_events

    install_patches(settings)  # as the worker does (streams.runner)

    state: dict[str, float | int | None] = {"n": 0, "first": None, "last": None}

    def write() -> None:
        tmp = progress.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({**state, "pid": os.getpid()}))
        os.replace(tmp, progress)

    @app.agent(user_events)
    async def count(stream):  # noqa: ANN001, ANN202 - faust stream
        n = 0
        async for _event in stream.events():
            n += 1
            state["n"] = n
            if n == 1:
                state["first"] = time.time()
            if n == expected:
                state["last"] = time.time()
                write()

    @app.timer(0.25)
    async def report() -> None:
        write()

    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process by tools.bench
    sys.exit(main())
