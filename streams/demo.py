"""``coursepulse demo``: broker, Redis, workers, simulated platform traffic and live results.

Everything runs on loopback: the embedded Tansu broker and Redis (unless configured), N worker
processes (``coursepulse worker``), the simulator producing at a fixed rate, and a tail consumer
of the output topics. The live view (rich) or the headless log shows events/s, profiles,
segments, the DLQ and - as their agents land - recommendations and alerts. On exit every child
process is stopped; ``--summary-json`` records how many messages each topic received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
import urllib.request
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import ALL_TOPICS, create_topics
from streams.embedded import EmbeddedServices, free_port, start_process
from streams.kafka_auth import aiokafka_kwargs
from streams.producer import ProduceStats, produce
from streams.settings import Settings

__all__ = ["run_demo"]

log = logging.getLogger(__name__)
_TAILED = ("user-profiles", "events-dlq", "recommendations", "churn-alerts", "referral-candidates")


@dataclasses.dataclass
class Worker:
    index: int
    port: int
    proc: Any
    log_path: Path

    def stats(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=0.5) as r:
                return orjson.loads(r.read())
        except OSError:
            return {}


def _sum(stats: list[dict[str, Any]], name: str) -> float:
    total = 0.0
    for s in stats:
        v = s.get(name, 0)
        total += sum(v.values()) if isinstance(v, dict) else v
    return total


class Tail:
    """Counts and keeps samples of the output topics while the demo runs."""

    def __init__(self, settings: Settings, sent: ProduceStats | None = None) -> None:
        self.settings = settings
        self.sent = sent
        #: seconds from an event's send to the recommendation it triggered (Kafka timestamps)
        self.rec_latency: deque[float] = deque(maxlen=20_000)
        self.warmup_s = 5.0
        self.counts: Counter[str] = Counter()
        self.segments: dict[str, str] = {}
        self.samples: dict[str, deque[dict[str, Any]]] = {t: deque(maxlen=5) for t in _TAILED}
        self.first_seen: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            *(self.settings.topic(t) for t in _TAILED),
            bootstrap_servers=self.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        prefix = len(self.settings.topic_prefix)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                for tp, records in batch.items():
                    topic = tp.topic[prefix:]
                    for rec in records:
                        self.counts[topic] += 1
                        self.first_seen.setdefault(topic, time.monotonic())
                        try:
                            value = orjson.loads(rec.value)
                        except orjson.JSONDecodeError:
                            continue
                        if topic == "user-profiles":
                            self.segments[value["user_id"]] = value["segment"]
                        elif topic == "recommendations" and self.sent is not None:
                            sent_at = self.sent.sent_at.get(value.get("event_id"))
                            # steady state: the first seconds (consumer group join, catch-up) excluded
                            warm = time.monotonic() - self.first_seen["recommendations"] > self.warmup_s
                            if sent_at is not None and warm:
                                self.rec_latency.append(rec.timestamp / 1000 - sent_at)
                        self.samples[topic].append(value)
        finally:
            await consumer.stop()


async def _start_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in await consumer.topics() for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def count_topics(settings: Settings, start: dict[TopicPartition, int], idle_s: float = 1.5) -> dict[str, int]:
    """Messages written to every topic since ``start``, by reading them (Tansu's end offsets lie)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1_048_576)
    await consumer.start()
    counts: Counter[str] = Counter()
    try:
        topics = sorted(await consumer.topics())
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp, 0))
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            n = sum(len(r) for r in batch.values())
            if n:
                last = time.monotonic()
                for tp, records in batch.items():
                    counts[tp.topic] += len(records)
        for t in topics:
            counts.setdefault(t, 0)
    finally:
        await consumer.stop()
    return dict(sorted(counts.items()))


def _pct(values: deque[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000:.0f}"


def _render(args: argparse.Namespace, sent: ProduceStats, stats: list[dict[str, Any]], tail: Tail,
            rates: dict[str, float], elapsed: float):  # noqa: ANN202 - rich renderable
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[b]sent[/b] {sent.total:,} ({rates['sent']:.0f}/s)",
        f"[b]processed[/b] {int(_sum(stats, 'events_in')):,} ({rates['processed']:.0f}/s)",
        f"[b]duplicates dropped[/b] {int(_sum(stats, 'duplicates')):,}",
        f"[b]DLQ[/b] {tail.counts['events-dlq']:,} (injected {sent.expected_dlq:,})",
        f"[b]profiles[/b] {tail.counts['user-profiles']:,}",
        f"[b]event→rec p50/p99[/b] {_pct(tail.rec_latency, 50)}/{_pct(tail.rec_latency, 99)} ms",
        f"[b]workers[/b] {len(stats)}/{args.workers}",
        f"{elapsed:.0f}s",
    )
    seg = Counter(tail.segments.values())
    seg_table = Table(title="users by segment (latest profile)", expand=True)
    for name in ("new", "active", "loyal", "at-risk", "dormant", "churned"):
        seg_table.add_column(name, justify="right")
    seg_table.add_row(*(str(seg.get(n, 0)) for n in ("new", "active", "loyal", "at-risk", "dormant", "churned")))

    prof = Table(title="latest profiles", expand=True)
    for col in ("user", "segment", "activity", "loyalty", "rfm", "views", "buys", "spend", "recent"):
        prof.add_column(col)
    for p in list(tail.samples["user-profiles"])[::-1]:
        prof.add_row(p["user_id"], p["segment"], f"{p['activity']:.2f}", f"{p['loyalty']:.2f}", p["rfm"],
                     str(p["views"]), str(p["purchases"]), f"{p['spend']:.0f}", ",".join(p["recent_courses"][:3]))

    outs = Table(title="other outputs", expand=True)
    outs.add_column("topic")
    outs.add_column("messages", justify="right")
    outs.add_column("latest")
    for topic in ("recommendations", "churn-alerts", "referral-candidates", "events-dlq"):
        latest = tail.samples[topic][-1] if tail.samples[topic] else None
        if latest is None:
            text = "-"
        elif topic == "events-dlq":
            text = f"{latest['source_topic']}@{latest['partition']}:{latest['offset']} {latest['error_kind']}: {latest['error'][:70]}"
        elif topic == "recommendations":
            text = f"{latest['user_id']}: " + ", ".join(f"{i['course_id']} ({i['reason']})" for i in latest["items"][:3])
        elif topic == "churn-alerts":
            text = f"{latest['user_id']} risk {latest['risk']:.2f}, {latest['days_inactive']:.0f} d inactive: {latest['action']}"
        else:
            text = f"{latest['user_id']} propensity {latest['propensity']:.2f} ({latest['incentive']})"
        outs.add_row(topic, f"{tail.counts[topic]:,}", text)
    return Panel(Group(head, seg_table, prof, outs), title="CoursePulse demo (Ctrl-C to stop)")


async def _demo(args: argparse.Namespace, settings: Settings, workdir: Path) -> dict[str, Any]:
    from streams.simulator import PlatformSimulator, SimConfig

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
