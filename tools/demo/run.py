"""``coursepulse demo``: start everything, produce simulated traffic, show it, stop everything."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson

from streams.admin import ALL_TOPICS, create_topics
from streams.embedded import EmbeddedServices, free_port, start_process
from streams.producer import ProduceStats, produce
from streams.settings import Settings
from tools.demo.tail import Tail, _start_offsets, count_topics
from tools.demo.view import Worker, _pct, _render, _sum

log = logging.getLogger(__name__)


async def _demo(args: argparse.Namespace, settings: Settings, workdir: Path) -> dict[str, Any]:
    from tools.simulator import PlatformSimulator, SimConfig

    await create_topics(settings)
    start_offsets = await _start_offsets(settings)
    workers: list[Worker] = []
    env_base = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    for i in range(args.workers):
        port = free_port()
        env = {**env_base, "COURSEPULSE_WEB_PORT": str(port), "COURSEPULSE_WEB_HOST": "127.0.0.1",
               "COURSEPULSE_DATA_DIR": str(workdir / f"worker-{i}")}
        log_path = workdir / f"worker-{i}.log"
        proc = start_process([sys.executable, "-m", "streams.cli", "worker"], log_path, env)
        workers.append(Worker(i, port, proc, log_path))
    stop = asyncio.Event()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if interrupted.is_set():  # a second Ctrl-C: let the default handler end us at once
            loop.remove_signal_handler(sig)
        log.info("stopping (%s): workers and services are shut down in order", sig.name)
        interrupted.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)

    deadline = time.monotonic() + 60
    while not all(w.stats() for w in workers):
        for w in workers:
            if w.proc.poll() is not None:
                msg = f"worker {w.index} exited with {w.proc.returncode}; see {w.log_path}"
                raise RuntimeError(msg)
        if time.monotonic() > deadline or stop.is_set():
            msg = "workers did not start within 60 s"
            raise RuntimeError(msg)
        await asyncio.sleep(0.2)

    sent = ProduceStats(keep_sent_at=200_000)
    tail = Tail(settings, sent)
    tail_task = asyncio.create_task(tail.run(stop_tail := asyncio.Event()))
    sim = PlatformSimulator(SimConfig(users=args.users, days=args.days, seed=args.seed))
    produce_task = asyncio.create_task(
        produce(settings, sim.events(), rate=args.rate, duration=args.duration, bad_fraction=args.bad_fraction,
                seed=args.seed, stats=sent, stop=stop)
    )
    started = time.monotonic()
    history: deque[tuple[float, float, float]] = deque(maxlen=20)
    live = None
    if not args.headless:
        from rich.live import Live

        live = Live(refresh_per_second=4, screen=False)
        live.start()
    last_log = 0.0
    try:
        while not produce_task.done() and not stop.is_set():
            await asyncio.sleep(0.5)
            stats = [s for s in (w.stats() for w in workers) if s]
            now = time.monotonic()
            history.append((now, sent.total, _sum(stats, "events_in")))
            t0, s0, p0 = history[0]
            dt = max(now - t0, 1e-6)
            rates = {"sent": (sent.total - s0) / dt, "processed": (_sum(stats, "events_in") - p0) / dt}
            if live is not None:
                live.update(_render(args, sent, stats, tail, rates, now - started))
            elif now - last_log >= 5:
                last_log = now
                log.info("sent %d (%.0f/s), processed %d (%.0f/s), profiles %d, dlq %d, recs %d "
                         "(event->rec p50 %s ms, p99 %s ms), alerts %d",
                         sent.total, rates["sent"], _sum(stats, "events_in"), rates["processed"],
                         tail.counts["user-profiles"], tail.counts["events-dlq"], tail.counts["recommendations"],
                         _pct(tail.rec_latency, 50), _pct(tail.rec_latency, 99), tail.counts["churn-alerts"])
        stop.set()
        final_sent = await produce_task
        # drain: wait until the workers have taken in every good event (or give up after 20 s)
        good = sum(final_sent.good.values()) - final_sent.good.get("courses", 0)
        drain_deadline = time.monotonic() + (3 if interrupted.is_set() else 20)
        while time.monotonic() < drain_deadline:
            stats = [s for s in (w.stats() for w in workers) if s]
            if _sum(stats, "events_in") >= good and tail.counts["events-dlq"] >= final_sent.expected_dlq:
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)  # the last batch's outputs and the tail's last poll
    finally:
        if live is not None:
            live.stop()
        stop_tail.set()
        with contextlib.suppress(Exception):
            await tail_task
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
    stats = [s for s in (w.stats() for w in workers) if s]
    elapsed = time.monotonic() - started
    for w in workers:
        try:
            w.proc.wait(timeout=15)
        except Exception:  # noqa: BLE001 - make sure nothing is left behind
            w.proc.kill()
    counts = await count_topics(settings, start_offsets)
    prefix = len(settings.topic_prefix)
    return {
        "topics": {t[prefix:] if t.startswith(settings.topic_prefix) else t: n for t, n in counts.items()},
        "produced": final_sent.as_dict(),
        "processed": {"events_in": _sum(stats, "events_in"), "duplicates": _sum(stats, "duplicates"),
                      "dlq": _sum(stats, "dlq")},
        "segments": dict(Counter(tail.segments.values())),
        "event_to_recommendation_ms": {
            f"p{q}": float(_pct(tail.rec_latency, q)) if tail.rec_latency else None for q in (50, 95, 99)
        },
        "duration_s": round(elapsed, 2),
        "events_per_s": round(final_sent.total / max(elapsed, 1e-6), 1),
        "workers": args.workers,
        "settings": {"kafka_broker": settings.kafka_broker, "redis_url": settings.redis_url,
                     "partitions": settings.partitions},
    }


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; return the process exit code."""
    requested = Settings.from_env()
    with EmbeddedServices(requested) as services:
        settings = services.settings
        workdir = services.workdir or Path(".")
        if args.headless:
            log.info("demo: broker %s, redis %s, logs in %s", settings.kafka_broker, settings.redis_url, workdir)
        try:
            summary = asyncio.run(_demo(args, settings, workdir))
        except KeyboardInterrupt:
            return 130
        missing = [t for t in ALL_TOPICS if t not in summary["topics"]]
        for t in missing:
            summary["topics"][t] = 0
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_bytes(text)
    if args.headless:
        print(text.decode())
    else:
        from rich.console import Console

        Console().print_json(text.decode())
    return 0
