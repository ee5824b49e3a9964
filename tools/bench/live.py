"""(a)-(d) and the profile: the live measurements against one broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings
from tools.bench.children import (
    Child,
    Children,
    _busy_cores,
    _counters,
    _has_uvloop,
    _interpolate,
    _others,
    _PhaseError,
    _py_spy,
    _steady_rate,
    _system_cpu,
    _thread_cpu_s,
    _thread_split,
    child_env,
    proc_cpu_s,
    proc_memory,
)
from tools.bench.config import BenchConfig
from tools.bench.latency import _LatencyParts

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# the live parts (a)-(e) and the profile


class _Live(_LatencyParts):
    """The live measurements against one broker."""

    def __init__(self, config: BenchConfig, settings: Settings, workdir: Path, broker_pid: int | None,
                 children: Children) -> None:
        self.config = config
        self.base = settings
        self.workdir = workdir
        self.broker_pid = broker_pid
        self.children = children
        self.tag = uuid.uuid4().hex[:6]
        self.session: Any = None
        self.last_samples: list[tuple[float, float]] = []
        #: times /stats failed and events_in was read from /metrics instead
        self.stats_fallbacks = 0

    # -- helpers -------------------------------------------------------------------------------

    def settings_for(self, phase: str) -> Settings:
        """Fresh topics, consumer group, changelogs and Redis keys for one phase."""
        return dataclasses.replace(
            self.base, topic_prefix=f"bench{self.tag}-{phase}-", app_id=f"bench{self.tag}-{phase}",
            redis_prefix=f"cp-bench-{self.tag}-{phase}:", redis_ttl_s=3600,
        )

    async def get_json(self, port: int, path: str) -> Any:
        import aiohttp

        try:
            async with self.session.get(f"http://127.0.0.1:{port}{path}") as response:
                if response.status != 200:
                    return None
                return orjson.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
            return None

    async def events_in(self, worker: Child) -> float | None:
        """The worker's ``events_in`` (all labels): from ``/stats``, else from ``/metrics``."""
        stats = await self.get_json(worker.port or 0, "/stats")
        if stats is not None:
            value = stats.get("events_in", 0)
            return float(sum(value.values()) if isinstance(value, dict) else value)
        text = await self.get_text(worker.port or 0, "/metrics")
        if text is None:
            return None
        self.stats_fallbacks += 1
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(("coursepulse_events_in_total{", "coursepulse_events_in_total ")))

    async def get_text(self, port: int, path: str) -> str | None:
        import aiohttp

        try:
            async with self.session.get(f"http://127.0.0.1:{port}{path}") as response:
                return await response.text() if response.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, UnicodeDecodeError):
            return None

    def start_worker(self, settings: Settings, name: str) -> Child:
        from streams.embedded import free_port

        port = free_port()
        env = child_env({**settings.to_env(), "COURSEPULSE_WEB_PORT": str(port),
                          "COURSEPULSE_WEB_HOST": "127.0.0.1",
                          "COURSEPULSE_DATA_DIR": str(self.workdir / name)})
        return self.children.start(name, [sys.executable, "-m", "streams.cli", "worker"],
                                   self.workdir / f"{name}.log", env, port)

    async def wait_healthy(self, workers: list[Child], timeout: float = 90.0) -> float:
        started = time.monotonic()
        pending = list(workers)
        while pending:
            for w in pending:
                if not w.alive():
                    msg = f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}"
                    raise _PhaseError(msg)
            pending = [w for w in pending if await self.get_json(w.port or 0, "/healthz") is None]
            if pending and time.monotonic() - started > timeout:
                msg = f"{pending[0].name} did not answer /healthz within {timeout:.0f} s:\n{pending[0].log_tail()}"
                raise _PhaseError(msg)
            if pending:
                await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def preproduce(self, settings: Settings, courses: list[Any], events: list[Any]) -> dict[str, Any]:
        from streams.admin import create_topics
        from streams.producer import produce

        await create_topics(settings)
        t = time.perf_counter()
        stats = await produce(settings, [*courses, *events])
        elapsed = time.perf_counter() - t
        return {"records": stats.total, "elapsed_s": elapsed, "records_per_s": stats.total / elapsed}

    async def measure_rate(self, workers: list[Child], target: int, timeout: float,
                           on_first: Callable[[], Any] | None = None, poll: float = 0.1) -> dict[str, Any]:
        """Poll ``/stats`` until the workers' ``events_in`` sum reaches ``target``.

        Rate = (events at the end - events at the first non-zero sample) / (time between them).
        """
        pids = [w.proc.pid for w in workers]
        samples: list[tuple[float, float]] = []
        first: tuple[float, float] | None = None
        cpu0: list[float | None] = []
        threads0: list[dict[int, float]] = []
        broker0: float | None = None
        system0: tuple[float, float] | None = None
        me0: float | None = None
        started = time.monotonic()
        per_worker: list[float] = [0.0] * len(workers)
        while True:
            for w in workers:
                if not w.alive():
                    msg = f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}"
                    raise _PhaseError(msg)
            values = await asyncio.gather(*(self.events_in(w) for w in workers))
            now = time.monotonic()
            per_worker = [v if v is not None else p for v, p in zip(values, per_worker, strict=True)]
            n = sum(per_worker)
            samples.append((now, n))
            if first is None and n > 0:
                first = (now, n)
                cpu0 = [proc_cpu_s(p) for p in pids]
                threads0 = [_thread_cpu_s(p) for p in pids]
                broker0 = proc_cpu_s(self.broker_pid) if self.broker_pid else None
                system0 = _system_cpu()
                me0 = proc_cpu_s(os.getpid())
                if on_first is not None:
                    on_first()
            if n >= target:
                break
            if now - started > timeout:
                msg = f"events_in reached {n:.0f} of {target} within {timeout:.0f} s"
                raise _PhaseError(msg)
            await asyncio.sleep(poll)
        assert first is not None
        self.last_samples = samples
        t_end, n_end = samples[-1]
        wall = t_end - first[0]
        cpu1 = [proc_cpu_s(p) for p in pids]
        threads1 = [_thread_cpu_s(p) for p in pids]
        broker1 = proc_cpu_s(self.broker_pid) if self.broker_pid else None
        system1 = _system_cpu()
        me1 = proc_cpu_s(os.getpid())
        events = n_end - first[1]
        rate = events / wall if wall > 0 else None
        cpu = [b - a if a is not None and b is not None else None for a, b in zip(cpu0, cpu1, strict=True)]
        out: dict[str, Any] = {
            "events_per_s": rate,
            "events": int(n_end),
            "measured_events": int(events),
            "measured_s": wall,
            "first_seen_after_s": first[0] - started,
            "per_worker_events_in": per_worker,
            "worker_cpu_s": cpu,
            "worker_cpu_utilisation": [c / wall if c is not None and wall > 0 else None for c in cpu],
            "worker_thread_utilisation": [_thread_split(p, a, b, wall)
                                          for p, a, b in zip(pids, threads0, threads1, strict=True)],
            "worker_cpu_us_per_event": (sum(c for c in cpu if c is not None) / events * 1e6) if events > 0 else None,
            "broker_cpu_utilisation": ((broker1 - broker0) / wall) if broker0 is not None and broker1 is not None
                                      and wall > 0 else None,
            "bench_process_cpu_utilisation": (me1 - me0) / wall if me0 is not None and me1 is not None
                                             and wall > 0 else None,
            "machine_busy_cores": _busy_cores(system0, system1),
            "other_processes_busy_cores": _others(_busy_cores(system0, system1), wall, [*cpu, (
                broker1 - broker0) if broker0 is not None and broker1 is not None else None, (
                me1 - me0) if me0 is not None and me1 is not None else None]),
            "steady_events_per_s": _steady_rate(samples, target),
            "timeline": [(round(t - started, 2), int(v)) for t, v in samples[:: max(1, len(samples) // 100)]],
        }
        out.update(await self.internal_backlog(workers, first[0], events))
        return out

    async def internal_backlog(self, workers: list[Child], t_first: float, events: float,
                               timeout: float = 60.0) -> dict[str, Any]:
        """After ``events_in`` reached N: wait for the workers' own ``course-cooc`` backlog to drain.

        The rate above stops the clock when the inputs are taken in; co-occurrence updates the
        worker sent to itself may still be queued. This reports how many, and the rate with the
        clock stopped only when they are applied too.
        """
        def total(stats: list[dict[str, Any] | None], name: str) -> float | None:
            if any(st is None for st in stats):
                return None
            return sum(float(st.get(name, 0) or 0) for st in stats if st is not None)

        started = time.monotonic()
        backlog_at_end = None
        while True:
            stats = [await self.get_json(w.port or 0, "/stats") for w in workers]
            sent, applied = total(stats, "cooc_updates_sent"), total(stats, "cooc_updates_applied")
            if sent is None or applied is None:
                return {"internal_backlog": None}
            if backlog_at_end is None:
                backlog_at_end = sent - applied
            now = time.monotonic()
            if applied >= sent:
                return {"internal_backlog": {
                    "topic": "course-cooc", "updates_queued_when_inputs_done": backlog_at_end,
                    "updates_sent": sent, "drained_after_s": now - started,
                    "events_per_s_until_drained": events / (now - t_first) if now > t_first else None}}
            if now - started > timeout:
                return {"internal_backlog": {"topic": "course-cooc", "updates_queued_when_inputs_done": backlog_at_end,
                                             "updates_sent": sent, "drained_after_s": None,
                                             "still_queued": sent - applied}}
            await asyncio.sleep(0.2)

    # -- (a) -----------------------------------------------------------------------------------

    async def raw_consume(self, events: list[Any], repeats: int) -> dict[str, Any]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        from streams.admin import create_topics
        from streams.producer import to_wire

        settings = self.settings_for("raw")
        topic = settings.topic("raw")
        await create_topics(settings, ("raw",))
        wire = [to_wire(e) for e in events]
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), linger_ms=5, acks=1)
        await producer.start()
        t = time.perf_counter()
        try:
            for _, key, value in wire:
                await producer.send(topic, value=value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        produce_s = time.perf_counter() - t
        n = len(wire)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings), group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        rates = []
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
            consumer.assign(tps)
            for _ in range(repeats):
                await consumer.seek_to_beginning(*tps)
                got = 0
                t = time.perf_counter()
                while got < n:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += sum(len(records) for records in batch.values())
                    if time.perf_counter() - t > 120:
                        msg = f"raw consumer read {got} of {n} in 120 s"
                        raise _PhaseError(msg)
                rates.append(got / (time.perf_counter() - t))
        finally:
            await consumer.stop()
        rates.sort()
        return {"events": n, "passes": repeats, "events_per_s": rates[-1], "median_events_per_s": rates[len(rates) // 2],
                "all_events_per_s": rates, "produce_events_per_s": n / produce_s,
                "bytes": sum(len(v) + len(k) for _, k, v in wire)}

    # -- (b) -----------------------------------------------------------------------------------

    async def faust_empty(self, courses: list[Any], events: list[Any]) -> dict[str, Any]:
        from streams.embedded import free_port

        settings = self.settings_for("empty")
        produced = await self.preproduce(settings, courses, events)
        n = len(events)
        progress = self.workdir / "empty-progress.json"
        (self.workdir / "empty").mkdir(parents=True, exist_ok=True)  # as run_worker makes it
        env = child_env({**settings.to_env(), "COURSEPULSE_WEB_PORT": str(free_port()),
                          "COURSEPULSE_WEB_HOST": "127.0.0.1",
                          "COURSEPULSE_DATA_DIR": str(self.workdir / "empty"),
                          "COURSEPULSE_BENCH_PROGRESS": str(progress), "COURSEPULSE_BENCH_EXPECTED": str(n)})
        started = time.time()
        child = self.children.start("faust-empty", [sys.executable, "-m", "tools.bench.empty_agent"],
                                    self.workdir / "faust-empty.log", env)
        try:
            deadline = time.monotonic() + max(120.0, n / 500)
            state: dict[str, Any] = {}
            while True:
                if not child.alive():
                    msg = f"the empty-agent worker exited with {child.proc.returncode}:\n{child.log_tail()}"
                    raise _PhaseError(msg)
                with contextlib.suppress(OSError, orjson.JSONDecodeError):
                    state = orjson.loads(progress.read_bytes())
                if state.get("last") is not None:
                    break
                if time.monotonic() > deadline:
                    msg = f"the empty agent counted {state.get('n', 0)} of {n} events in time"
                    raise _PhaseError(msg)
                await asyncio.sleep(0.1)
            rss = proc_memory(child.proc.pid)
        finally:
            self.children.stop([child])
        wall = state["last"] - state["first"]
        return {"events": n, "events_per_s": (n - 1) / wall if wall > 0 else None, "measured_s": wall,
                "first_event_after_start_s": state["first"] - started, "preproduce": produced,
                "agent": "async for event in stream.events(): count += 1 (tools/bench/empty_agent.py)",
                "uvloop": _has_uvloop(), **rss}

    # -- (c), (d) and the profile --------------------------------------------------------------

    async def pipeline(self, phase: str, courses: list[Any], events: list[Any], n_workers: int,
                       profile_s: float | None = None) -> dict[str, Any]:
        settings = self.settings_for(phase)
        produced = await self.preproduce(settings, courses, events)
        workers = [self.start_worker(settings, f"{phase}-w{i}") for i in range(n_workers)]
        spy: dict[str, Any] = {}
        try:
            startup = await self.wait_healthy(workers)
            on_first = None
            if profile_s:
                on_first = lambda: spy.update(self.start_profiler(workers[0], profile_s))  # noqa: E731
            rate = await self.measure_rate(workers, len(events), timeout=max(180.0, len(events) / 100), on_first=on_first)
            memory = [proc_memory(w.proc.pid) for w in workers]
            stats = [await self.get_json(w.port or 0, "/stats") or {} for w in workers]
            if spy:
                t0 = spy["started"]
                spy["events_in_window"] = (_interpolate(self.last_samples, t0 + spy["seconds"])
                                           - _interpolate(self.last_samples, t0))
                spy = await self.finish_profiler(spy, workers[0])
        finally:
            self.children.stop(workers)
        out = {"workers": n_workers, "preproduce": produced, "startup_s": startup, **rate,
               "worker_memory": memory, "worker_stats": [_counters(s) for s in stats]}
        if spy:
            out["profile"] = spy
        return out

    def start_profiler(self, worker: Child, seconds: float) -> dict[str, Any]:
        py_spy = _py_spy()
        raw = self.workdir / "profile.raw.txt"
        assert py_spy is not None
        child = self.children.start(
            "py-spy", [py_spy, "record", "-p", str(worker.proc.pid), "-d", str(int(seconds)), "-f", "raw",
                       "-o", str(raw), "--nonblocking"],
            self.workdir / "py-spy.log", child_env({}))
        return {"child": child, "raw": raw, "seconds": seconds, "started": time.monotonic(), "events0": None}

    async def finish_profiler(self, spy: dict[str, Any], worker: Child) -> dict[str, Any]:
        child: Child = spy["child"]
        # events processed while py-spy sampled: the counter when it started and `seconds` later
        # (measure_rate ran until the end of the backlog; the worker is idle after it)
        deadline = spy["started"] + spy["seconds"] + 30
        while child.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if child.alive():
            self.children.stop([child])
        if not spy["raw"].exists():
            msg = f"py-spy wrote no profile:\n{child.log_tail()}"
            raise _PhaseError(msg)
        if self.config.profile_raw is not None:
            self.config.profile_raw.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spy["raw"], self.config.profile_raw)
        return {"raw": str(self.config.profile_raw or spy["raw"]), "seconds": spy["seconds"],
                "events_in_window": spy["events_in_window"],
                "command": f"py-spy record -p PID -d {int(spy['seconds'])} -f raw -o FILE --nonblocking"}
