"""(e) Event -> output latency at offered rates, and the broker's own fetch latency for context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import orjson

from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings
from tools.bench.children import (
    Child,
    _busy_cores,
    _others,
    _PhaseError,
    _system_cpu,
    _thread_cpu_s,
    _thread_split,
    proc_cpu_s,
    proc_memory,
)
from tools.bench.evaluation import _simulate

log = logging.getLogger(__name__)


class _LatencyParts:
    """The latency measurements of :class:`tools.bench.live._Live` (a mixin: it uses the live helpers)."""

    # -- broker fetch latency (context for (e)) ------------------------------------------------

    async def fetch_latency(self, rate: float, seconds: float, waits: tuple[int, ...] = (1500, 100)) -> dict[str, Any]:
        """Produce -> plain-consumer latency at ``rate``, per ``fetch_max_wait_ms``.

        Faust's aiokafka driver fixes ``fetch_max_wait_ms=1500`` for its consumer; how long the
        broker holds a fetch when records are there bounds the pipeline's latency from below.
        """
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from streams.admin import create_topics

        out: dict[str, Any] = {"rate_events_per_s": rate, "seconds": seconds, "partitions": self.base.partitions}
        for wait_ms in waits:
            settings = self.settings_for(f"fetch{wait_ms}")
            topic = settings.topic("probe")
            await create_topics(settings, ("probe",))
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None,
                                        auto_offset_reset="earliest", enable_auto_commit=False,
                                        fetch_max_wait_ms=wait_ms)
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=5, acks=1)
            await consumer.start()
            await producer.start()
            latencies: list[float] = []
            stop = asyncio.Event()

            async def tail(consumer: Any = consumer, latencies: list[float] = latencies, stop: asyncio.Event = stop) -> None:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200)
                    now_ms = time.time() * 1000
                    for records in batch.values():
                        latencies.extend(now_ms - float(r.value) for r in records)

            task = asyncio.create_task(tail())
            try:
                start = time.monotonic()
                n = 0
                while time.monotonic() - start < seconds:
                    await producer.send(topic, key=str(n).encode(), value=repr(time.time() * 1000).encode())
                    n += 1
                    await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                await asyncio.sleep(min(3.0, wait_ms / 1000 + 0.5))
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)
                await producer.stop()
                await consumer.stop()
            steady = latencies[len(latencies) // 5:]  # after the consumer's first fetches
            out[f"fetch_max_wait_ms_{wait_ms}"] = _percentiles(steady)
        return out

    # -- (e) -----------------------------------------------------------------------------------

    async def latency(self, rate_c: float) -> dict[str, Any]:
        from aiokafka.partitioner import DefaultPartitioner

        from streams.admin import create_topics
        from streams.producer import ProduceStats, produce

        cfg = self.config
        settings = self.settings_for("lat")
        warm_s = 3.0 if cfg.quick else 5.0
        rates = list(cfg.latency_rates) or [f * rate_c for f in cfg.fractions]
        fractions = [None] * len(rates) if cfg.latency_rates else list(cfg.fractions)
        needed = int(rates[0] * (warm_s + 10) + sum(r * cfg.latency_s for r in rates) * 1.1) + 1000
        courses, events = _simulate(needed, cfg.seed + 1)
        await create_topics(settings)
        await produce(settings, courses)
        worker = self.start_worker(settings, "lat-w0")
        partitions = list(range(settings.partitions))
        partitioner = DefaultPartitioner()
        meta: dict[str, tuple[int, int]] = {}  # event_id -> (partition, ts)

        def traced() -> Iterator[Any]:
            for ev in events:
                meta[ev.event_id] = (partitioner(ev.user_id.encode(), partitions, partitions), ev.ts)
                yield ev

        stream = traced()
        tail = _OutputTail(settings)
        stop_tail = asyncio.Event()
        tail_task = asyncio.create_task(tail.run(stop_tail))
        phases: list[dict[str, Any]] = []
        sent_total = 0
        try:
            await self.wait_healthy([worker])
            # warm-up at the lowest rate until the worker is assigned and keeping up
            warm = ProduceStats()
            await produce(settings, stream, rate=rates[0], duration=warm_s, stats=warm)
            sent_total += warm.total
            if await self.drain(worker, sent_total, 120.0) < 0:
                msg = f"{worker.name} did not take in the {warm.total} warm-up events within 120 s"
                raise _PhaseError(msg)
            for fraction, rate in zip(fractions, rates, strict=True):
                stats = ProduceStats(keep_sent_at=10**8)
                cpu0, t0, sys0, me0 = proc_cpu_s(worker.proc.pid), time.monotonic(), _system_cpu(), proc_cpu_s(os.getpid())
                th0 = _thread_cpu_s(worker.proc.pid)
                br0 = proc_cpu_s(self.broker_pid) if self.broker_pid else None
                await produce(settings, stream, rate=rate, duration=cfg.latency_s, stats=stats)
                produced_s = time.monotonic() - t0
                sent_total += stats.total
                drain_s = await self.drain(worker, sent_total, 60.0)
                cpu1, t1, sys1, me1 = proc_cpu_s(worker.proc.pid), time.monotonic(), _system_cpu(), proc_cpu_s(os.getpid())
                th1 = _thread_cpu_s(worker.proc.pid)
                br1 = proc_cpu_s(self.broker_pid) if self.broker_pid else None
                used = [b - a if a is not None and b is not None else None
                        for a, b in ((cpu0, cpu1), (br0, br1), (me0, me1))]
                phases.append({"fraction": fraction, "target_events_per_s": rate, "sent": stats.total,
                               "offered_events_per_s": stats.total / produced_s, "sent_at": stats.sent_at,
                               "duration_s": produced_s, "drained_after_s": drain_s if drain_s >= 0 else None,
                               "worker_cpu_utilisation": (cpu1 - cpu0) / (t1 - t0)
                               if cpu0 is not None and cpu1 is not None else None,
                               "worker_thread_utilisation": _thread_split(worker.proc.pid, th0, th1, t1 - t0),
                               "bench_process_cpu_utilisation": (me1 - me0) / (t1 - t0)
                               if me0 is not None and me1 is not None else None,
                               "broker_cpu_utilisation": used[1] / (t1 - t0) if used[1] is not None else None,
                               "machine_busy_cores": _busy_cores(sys0, sys1),
                               "other_processes_busy_cores": _others(_busy_cores(sys0, sys1), t1 - t0, used)})
            await asyncio.sleep(settings.rec_flush_s + 1.5)  # the last flush and the tail's last poll
            memory = proc_memory(worker.proc.pid)
        finally:
            stop_tail.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tail_task, 10)
            self.children.stop([worker])
        return _latency_report(phases, tail, meta, int(settings.allowed_lateness_s * 1000),
                               settings.rec_flush_s, memory)

    async def drain(self, worker: Child, target: int, timeout: float) -> float:
        """Wait until the worker has taken in ``target`` events; return the seconds it took (or -1)."""
        started = time.monotonic()
        n = None
        while True:
            if not worker.alive():
                msg = f"{worker.name} exited with {worker.proc.returncode}:\n{worker.log_tail()}"
                raise _PhaseError(msg)
            n = await self.events_in(worker)
            if n is not None and n >= target:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                log.warning("%s took in %s of %d events within %.0f s", worker.name, n, target, timeout)
                return -1.0
            await asyncio.sleep(0.2)


class _OutputTail:
    """Reads ``recommendations`` and ``churn-alerts`` from the beginning while the latency runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: (Kafka timestamp ms, event_id) per recommendation
        self.recs: list[tuple[int, str | None]] = []
        #: (Kafka timestamp ms, partition, generated_at) per alert
        self.alerts: list[tuple[int, int, int]] = []

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        rec_topic = self.settings.topic("recommendations")
        consumer = AIOKafkaConsumer(rec_topic, self.settings.topic("churn-alerts"),
                                    bootstrap_servers=self.settings.bootstrap_servers, **aiokafka_kwargs(self.settings),
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            value = orjson.loads(rec.value)
                        except orjson.JSONDecodeError:
                            continue
                        if tp.topic == rec_topic:
                            self.recs.append((rec.timestamp, value.get("event_id")))
                        else:
                            self.alerts.append((rec.timestamp, tp.partition, int(value["generated_at"])))
        finally:
            await consumer.stop()


def _percentiles(values_ms: list[float]) -> dict[str, Any]:
    import numpy as np

    if not values_ms:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values_ms)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": len(values_ms), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "mean": float(a.mean()), "max": float(a.max())}


def _latency_report(phases: list[dict[str, Any]], tail: _OutputTail, meta: dict[str, tuple[int, int]],
                    lateness_ms: int, rec_flush_s: float, memory: dict[str, float]) -> dict[str, Any]:
    """Match outputs to the events that caused them; percentiles per offered rate."""
    phase_of: dict[str, int] = {}
    trigger: dict[tuple[int, int], tuple[float, int]] = {}  # (partition, ts) -> (first send time, phase)
    for i, ph in enumerate(phases):
        for event_id, sent in ph["sent_at"].items():
            phase_of[event_id] = i
            partition, ts = meta[event_id]
            key = (partition, ts)
            if key not in trigger or sent < trigger[key][0]:
                trigger[key] = (sent, i)
    rec_ms: list[list[float]] = [[] for _ in phases]
    rec_at: list[list[tuple[float, float]]] = [[] for _ in phases]  # (seconds into the phase, ms)
    starts = [min(ph["sent_at"].values(), default=0.0) for ph in phases]
    for ts_ms, event_id in tail.recs:
        i = phase_of.get(event_id) if event_id else None
        if i is not None:
            sent = phases[i]["sent_at"][event_id]
            rec_ms[i].append(ts_ms - sent * 1000)
            rec_at[i].append((sent - starts[i], ts_ms - sent * 1000))
    alert_ms: list[list[float]] = [[] for _ in phases]
    unmatched = 0
    for ts_ms, partition, generated_at in tail.alerts:
        found = trigger.get((partition, generated_at + lateness_ms))
        if found is None:
            unmatched += 1
            continue
        alert_ms[found[1]].append(ts_ms - found[0] * 1000)
    out_phases = []
    for i, ph in enumerate(phases):
        out_phases.append({
            **{k: v for k, v in ph.items() if k != "sent_at"},
            "event_to_recommendation_ms": _percentiles(rec_ms[i]),
            "event_to_alert_ms": _percentiles(alert_ms[i]),
            "event_to_recommendation_p50_ms_by_2s": _by_bucket(rec_at[i], 2.0),
        })
    return {
        "phases": out_phases,
        "recommendations_seen": len(tail.recs),
        "alerts_seen": len(tail.alerts),
        "alerts_unmatched": unmatched,
        "worker_memory": memory,
        "definitions": {
            "event_to_recommendation": "Kafka timestamp of a `recommendations` record minus the wall-clock "
                                       "send time of the event named by its `event_id` (the user's latest "
                                       f"event before the {rec_flush_s} s coalescing flush; earlier events of "
                                       "the same user folded into the same list are not counted)",
            "event_to_alert": "Kafka timestamp of a `churn-alerts` record minus the send time of the first "
                              "event in the same partition whose ts equals the alert's generated_at + "
                              f"allowed lateness ({lateness_ms} ms), i.e. the event that moved the "
                              "partition's watermark to generated_at and so made the alert decidable. "
                              "Alerts decided on a watermark reached before the measured phases are "
                              "counted as unmatched",
        },
    }


def _by_bucket(points: list[tuple[float, float]], width: float) -> list[tuple[float, float, int]]:
    """``(bucket start s, median ms, n)`` of ``(seconds, ms)`` points: how latency moved in a phase."""
    import numpy as np

    buckets: dict[int, list[float]] = {}
    for t, ms in points:
        buckets.setdefault(int(t // width), []).append(ms)
    return [(b * width, round(float(np.median(v)), 1), len(v)) for b, v in sorted(buckets.items())]
