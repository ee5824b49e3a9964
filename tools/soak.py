"""``coursepulse soak``: one worker under steady simulated traffic for minutes, its memory sampled.

First a calibration: a fresh worker drains a pre-produced backlog as fast as it can, which gives
the rate it sustains. Then a second fresh worker takes simulated traffic at a fraction of that
rate (default one half) for ``--duration`` seconds while its resident memory (VmRSS), events
processed and backlog are sampled. The report says how much RSS grew after the warm-up and the
least-squares slope of RSS over the rest, in MB per 10 minutes. The warm-up is ``--warmup``
seconds of the same traffic before the measured ``--duration`` (per-user structures fill up to
their bounds meanwhile: each user's de-duplication memory holds their last 128 event ids, which
3,000 users reach after ~400,000 events), or, without it, the first sixth of the run. It is a
report, not a test: figures, not a verdict.

The population is fixed after the warm-up (:class:`Population`): the simulator keeps bringing new
users (sign-ups spread over its ``days`` and the invitees of shares, about 7 per 1,000 events),
whose state is legitimate growth that would hide a leak, so once the warm-up ends only the users
seen during it send events (the others' are left out and counted). The report also says how
many de-duplication ids and event times the users' bounded windows gained after the warm-up
(growth expected until they are full) and the RSS growth per 1,000 events processed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Settings

__all__ = ["Population", "SoakConfig", "run_soak"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SoakConfig:
    """What to run: duration, share of the sustainable rate, simulated platform, sampling."""

    duration_s: float = 600.0
    load: float = 0.5
    rate: float | None = None  # events/s; None: load x the calibrated sustainable rate
    users: int = 3000
    days: float = 365.0
    #: events of the calibration backlog (looped over the same population, as the soak is); the
    #: rate is taken over its second half, once the users' windows and the models have grown:
    #: a fresh worker draining 20,000 events of new users ran ~1.4x faster than it can sustain
    calibration_events: int = 200_000
    sample_every_s: float = 10.0
    seed: int = 11
    #: seconds of traffic before the measured duration; None: the first sixth of the duration
    warmup_s: float | None = None
    #: after the warm-up, only the users seen during it send events (a steady population)
    fixed_population: bool = True
    #: passes over the simulated period: once the simulator's ``days`` are sent, the same users'
    #: events come again, ``days`` later each pass (ids marked by the pass), so a small population
    #: keeps sending for the whole run; the simulation starts ``days x passes`` ago, so no event
    #: is in the future
    passes: int = 30
    #: the traffic producer's linger: batches of a few records per partition, as an emitting
    #: service sends them; 5 ms at these rates writes one-record batches, and Tansu's fetch cost
    #: grows with the batches a partition holds (docs/reliability.md, "The broker's fetch cost")
    linger_ms: int = 100


class Population:
    """Simulated records, from every user until :meth:`freeze`, then only from the users seen
    before it; counts each user's events sent (records without a ``user_id`` always pass).

    >>> from types import SimpleNamespace as R
    >>> pop = Population([R(user_id="a"), R(user_id="b"), R(user_id="c"), R(user_id="a")])
    >>> it = iter(pop)
    >>> [next(it).user_id, next(it).user_id]
    ['a', 'b']
    >>> pop.freeze()
    >>> [r.user_id for r in it], pop.left_out, pop.events["a"]
    (['a'], 1, 2)
    """

    def __init__(self, records: Iterable[Any]) -> None:
        self.records = records
        self.frozen = False
        self.left_out = 0
        #: user_id -> events sent
        self.events: Counter[str] = Counter()

    def freeze(self) -> None:
        """From now on, only users already seen send events."""
        self.frozen = True

    def __iter__(self) -> Iterator[Any]:
        events = self.events
        for record in self.records:
            user_id = getattr(record, "user_id", None)
            if user_id is None:
                yield record
            elif not self.frozen or user_id in events:
                events[user_id] += 1
                yield record
            else:
                self.left_out += 1

    def window_slots(self, bound: int) -> int:
        """Entries the users' windows of ``bound`` entries hold, one entry per event sent."""
        return sum(min(n, bound) for n in self.events.values())


def looped(records: Iterable[Any], span_ms: int, passes: int) -> Iterator[Any]:
    """``records``, then their user events again for ``passes - 1`` more passes, each ``span_ms``
    later, with the ids that must be unique (event, order and share ids) marked by the pass: the
    same users in the platform's next period.

    >>> from schemas.events import Share
    >>> s = Share(event_id="e1", user_id="u", ts=1_000, schema_version=1, course_id="c",
    ...           channel="wechat_group", share_id="s1")
    >>> [(r.event_id, r.ts, r.share_id) for r in looped([s], span_ms=500, passes=3)]
    [('e1', 1000, 's1'), ('e1~1', 1500, 's1~1'), ('e1~2', 2000, 's1~2')]
    """
    kept: list[Any] = []
    for record in records:
        if getattr(record, "user_id", None) is not None:
            kept.append(record)
        yield record
    for k in range(1, passes):
        for record in kept:
            changes: dict[str, Any] = {"event_id": f"{record.event_id}~{k}", "ts": record.ts + k * span_ms}
            for name in ("order_id", "share_id"):
                value = getattr(record, name, None)
                if value is not None:
                    changes[name] = f"{value}~{k}"
            yield dataclasses.replace(record, **changes)


def _traffic(config: SoakConfig, seed: int) -> Iterator[Any]:
    """The simulated platform's records, looped for ``config.passes`` passes ending now."""
    from tools.simulator import PlatformSimulator, SimConfig

    span_ms = int(config.days * 86_400_000)
    start_ms = (int(time.time() * 1000) - span_ms * max(1, config.passes)) // 86_400_000 * 86_400_000
    sim = PlatformSimulator(SimConfig(users=config.users, days=config.days, seed=seed, start_ms=start_ms))
    return looped(sim.events(), span_ms, max(1, config.passes))


def _get(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return orjson.loads(r.read())
    except (OSError, ValueError):
        return None


def _events_in(port: int) -> float | None:
    stats = _get(port, "/stats")
    if stats is None:
        return None
    value = stats.get("events_in", 0)
    return float(sum(value.values()) if isinstance(value, dict) else value)


def _slope_per_10min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t s, MB) samples, in MB per 600 s."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return None
    return 600.0 * sum((t - mt) * (v - mv) for t, v in samples) / den


class _Run:
    def __init__(self, base: Settings, workdir: Path, broker_pid: int | None = None) -> None:
        from tools.bench.children import Children

        self.base = base
        self.broker_pid = broker_pid
        self.workdir = workdir
        self.children = Children()
        self.tag = uuid.uuid4().hex[:6]

    def settings_for(self, phase: str) -> Settings:
        return dataclasses.replace(self.base, topic_prefix=f"soak{self.tag}-{phase}-",
                                   app_id=f"soak{self.tag}-{phase}", redis_prefix=f"cp-soak-{self.tag}-{phase}:",
                                   redis_ttl_s=3600)

    def start_worker(self, settings: Settings, name: str) -> Any:
        from streams.embedded import free_port
        from tools.bench.children import child_env

        port = free_port()
        env = child_env({**settings.to_env(), "COURSEPULSE_WEB_PORT": str(port),
                          "COURSEPULSE_DATA_DIR": str(self.workdir / name)})
        child = self.children.start(name, [sys.executable, "-m", "streams.cli", "worker"],
                                    self.workdir / f"{name}.log", env, port)
        deadline = time.monotonic() + 90
        while _get(port, "/healthz") is None:
            if not child.alive() or time.monotonic() > deadline:
                msg = f"{name} did not start:\n{child.log_tail()}"
                raise RuntimeError(msg)
            time.sleep(0.2)
        return child

    async def calibrate(self, config: SoakConfig) -> float:
        """Events/s one worker drains from a pre-produced backlog, over its second half."""
        from streams.admin import create_topics
        from streams.producer import produce

        settings = self.settings_for("cal")
        await create_topics(settings)
        events = []
        for record in _traffic(config, config.seed + 1):
            events.append(record)
            if len(events) >= config.calibration_events:
                break
        stats = await produce(settings, events)
        target = sum(v for k, v in stats.good.items() if k != "courses")
        worker = self.start_worker(settings, "calibration")
        half: tuple[float, float] | None = None
        deadline = time.monotonic() + 900
        n = 0.0
        while time.monotonic() < deadline:
            n = _events_in(worker.port) or 0.0
            if half is None and n >= target / 2:
                half = (time.monotonic(), n)
            if n >= target:
                break
            await asyncio.sleep(0.2)
        end = time.monotonic()
        self.children.stop([worker])
        if half is None or end <= half[0]:
            return 0.0
        return (n - half[1]) / (end - half[0])

    async def soak(self, config: SoakConfig, rate: float) -> dict[str, Any]:
        from streams.admin import create_topics
        from streams.producer import ProduceStats, produce
        from tools.bench.children import proc_cpu_s, proc_memory

        settings = self.settings_for("soak")
        await create_topics(settings)
        worker = self.start_worker(settings, "soak-worker")
        from models.profile import RECENT_WINDOW

        population = Population(_traffic(config, config.seed))
        produced = ProduceStats()
        warm = config.duration_s / 6 if config.warmup_s is None else config.warmup_s
        total = config.duration_s + (config.warmup_s or 0.0)
        producer = asyncio.create_task(produce(settings, population, rate=rate, duration=total,
                                               stats=produced, linger_ms=config.linger_ms))
        samples: list[dict[str, Any]] = []
        at_warm: dict[str, Any] | None = None
        t0 = time.monotonic()
        pids = {"worker": worker.proc.pid, "broker": self.broker_pid}
        cpu_before = {k: proc_cpu_s(pid) if pid else None for k, pid in pids.items()}
        t_before = t0
        while not producer.done():
            await asyncio.sleep(config.sample_every_s)
            cpu_now = {k: proc_cpu_s(pid) if pid else None for k, pid in pids.items()}
            now = time.monotonic()
            # share of one core each used since the last sample
            cpu = {f"{k}_cpu": None if cpu_now[k] is None or cpu_before[k] is None
                   else round((cpu_now[k] - cpu_before[k]) / (now - t_before), 3) for k in pids}
            cpu_before, t_before = cpu_now, now
            mem = proc_memory(worker.proc.pid)
            sent = sum(v for k, v in produced.good.items() if k != "courses")
            processed = _events_in(worker.port)
            t = round(time.monotonic() - t0, 1)
            samples.append({"t_s": t, "rss_mb": round(mem.get("vmrss_mb", 0.0), 1),
                            "sent": sent, "processed": processed,
                            "backlog": None if processed is None else sent - processed, **cpu})
            if at_warm is None and t >= warm:
                at_warm = self._windows(population, settings.dedupe_window, RECENT_WINDOW)
                if config.fixed_population:
                    population.freeze()
            if not worker.alive():
                break
        await producer
        self.children.stop([worker])
        after = [(s["t_s"], s["rss_mb"]) for s in samples if s["t_s"] >= warm]
        at_end = self._windows(population, settings.dedupe_window, RECENT_WINDOW)
        first = next((s for s in samples if s["t_s"] >= warm), None)
        done_after = None if first is None or first["processed"] is None or samples[-1]["processed"] is None \
            else samples[-1]["processed"] - first["processed"]
        growth = round(after[-1][1] - after[0][1], 1) if after else None
        return {
            "rate_offered": round(rate, 1),
            "duration_s": config.duration_s,
            "warmup_s": round(warm, 1),
            "samples": samples,
            "rss_mb_after_warmup": after[0][1] if after else None,
            "rss_mb_end": samples[-1]["rss_mb"] if samples else None,
            "rss_growth_mb_after_warmup": growth,
            "rss_slope_mb_per_10min": None if (s := _slope_per_10min(after)) is None else round(s, 2),
            "backlog_end": samples[-1]["backlog"] if samples else None,
            "fixed_population": config.fixed_population,
            "passes": config.passes,
            "users_at_warmup_end": None if at_warm is None else at_warm["users"],
            "users_end": at_end["users"],
            "events_left_out_new_users": population.left_out,
            "processed_after_warmup": done_after,
            "rss_kb_per_1k_events_after_warmup": None if not done_after or growth is None
            else round(growth * 1e6 / done_after, 1),
            "window_entries_after_warmup": None if at_warm is None else {
                k: at_end[k] - at_warm[k] for k in ("dedupe_ids", "recent_times")},
            "worker_exit": worker.proc.returncode,
        }

    @staticmethod
    def _windows(population: Population, dedupe: int, recent: int) -> dict[str, int]:
        """Users so far and what their bounded windows hold (ids; event times, as many days)."""
        return {"users": len(population.events), "dedupe_ids": population.window_slots(dedupe),
                "recent_times": population.window_slots(recent)}


async def run_soak(config: SoakConfig, base: Settings, out: Path | None = None) -> dict[str, Any]:
    """Calibrate (unless a rate is given), soak, and return (and write) the report."""
    from streams.embedded import EmbeddedServices

    with EmbeddedServices(base) as svc, tempfile.TemporaryDirectory(prefix="cp-soak-") as tmp:
        run = _Run(svc.settings, Path(tmp), None if svc.broker is None else svc.broker.pid)
        try:
            sustainable = None
            rate = config.rate
            if rate is None:
                sustainable = await run.calibrate(config)
                rate = config.load * sustainable
                log.info("calibration: one worker drains %.0f ev/s; soaking at %.0f ev/s", sustainable, rate)
            report = await run.soak(config, rate)
        finally:
            run.children.stop_all()
    report = {"sustainable_events_per_s": None if sustainable is None else round(sustainable, 1),
              "load": config.load if config.rate is None else None, **report,
              "config": dataclasses.asdict(config)}
    if out is not None:
        out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report
