"""The fault scenarios: each one a function that runs a fresh broker, Redis and workers through
the event file with one fault, and returns the outcome (see tests/fault/harness.py).

Every scenario gets its own broker and Redis process (they start in well under a second), so a
killed broker or an emptied Redis never touches another scenario.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.admin import create_topics
from streams.settings import Settings
from tests.fault.harness import (
    Broker,
    Outcome,
    RedisServer,
    Sender,
    Worker,
    read_outcome,
    wait_quiet,
)

__all__ = ["SCENARIOS", "Run", "run_scenario"]

#: events per second the producer sends at: the ~3,200-event file takes ~8 s, so a fault
#: "mid-stream" happens while the worker is busy with it
RATE = 400.0
#: 5,000 malformed records mixed in (scenario ``bad_records``)
BAD_RECORDS = 5000
#: share of user events sent to a wrong partition (scenario ``misrouted``)
MISROUTE = 0.1
#: how long Redis is away (scenario ``redis_outage``)
REDIS_DOWN_S = 30.0
#: how long a worker may go on after its broker vanished before it counts as running on silently
BROKER_LOSS_NOTICE_S = 20.0


@dataclasses.dataclass
class Run:
    """One scenario's run: its outcome, timing and what the harness noticed on the way."""

    scenario: str
    store: str
    outcome: Outcome
    settings: Settings
    wall_s: float
    quiet: dict[str, Any]
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    sender: Sender | None = None


class Env:
    """The processes of one scenario run."""

    def __init__(self, workdir: Path, store: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(workdir)
        self.redis = RedisServer(workdir)
        self.broker.start()
        self.redis.start()
        tag = uuid.uuid4().hex[:8]
        self.settings = Settings(
            kafka_broker=self.broker.url, redis_url=self.redis.url, topic_prefix=f"f{tag}-",
            app_id=f"cp-f{tag}", redis_prefix=f"cp-f{tag}:", partitions=4, store=store,
            session_timeout_s=6.0, heartbeat_s=1.5,
            # a standalone Tansu as an operator runs it: the end-offset probe on, Faust's
            # consistency check on (it holds with true ends), broker loss noticed within 15 s
            end_offset_probe="on", recovery_consistency_check=True, broker_loss_exit_s=15.0,
            log_level=os.environ.get("COURSEPULSE_FAULT_LOG_LEVEL", "warning"),
        )
        asyncio.run(create_topics(self.settings))
        self.workers: list[Worker] = []

    def worker(self, name: str) -> Worker:
        w = Worker(self.settings, self.workdir, name)
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.broker.stop()
        self.redis.stop()


def _finish(env: Env, sender: Sender, workers: list[Worker], timeout: float = 60.0) -> dict[str, Any]:
    return wait_quiet(env.settings, sender.ends, workers, timeout=timeout)


def fault_free(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    w = env.worker("w0").start()
    sender = Sender(env.settings, rate=RATE)
    asyncio.run(sender.send(records))
    notes["quiet"] = _finish(env, sender, [w])
    return sender


def _kill_restart(at: float) -> Callable[[Env, list[Any], dict[str, Any]], Sender]:
    def scenario(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
        w = env.worker("w0").start()

        def crash() -> None:
            w.kill9()
            notes["killed_at_events_in"] = at
            w.start()

        sender = Sender(env.settings, rate=RATE)
        asyncio.run(sender.send(records, hooks={at: crash}))
        notes["quiet"] = _finish(env, sender, [w])
        return sender

    return scenario


def two_workers_one_killed(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    w0 = env.worker("w0").start()
    w1 = env.worker("w1").start()
    sender = Sender(env.settings, rate=RATE)
    asyncio.run(sender.send(records, hooks={0.5: w1.kill9}))
    notes["quiet"] = _finish(env, sender, [w0], timeout=90)
    return sender


def third_worker_joins(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    w0 = env.worker("w0").start()
    w1 = env.worker("w1").start()
    w2 = env.worker("w2")
    sender = Sender(env.settings, rate=RATE)
    asyncio.run(sender.send(records, hooks={0.4: w2.start}))
    notes["quiet"] = _finish(env, sender, [w0, w1, w2], timeout=90)
    return sender


def redis_outage(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    """Redis killed at 30 % of the stream, restarted empty ``REDIS_DOWN_S`` later (the stream
    has ended by then); the serving copies must be repaired from the worker's state."""
    w = env.worker("w0").start()

    def outage() -> None:
        env.redis.stop()
        time.sleep(REDIS_DOWN_S)
        env.redis.start()

    sender = Sender(env.settings, rate=RATE)
    asyncio.run(sender.send(records, hooks={0.3: outage}))
    notes["quiet"] = _finish(env, sender, [w])
    notes["redis_errors"] = w.stats().get("redis_errors")
    return sender


def broker_loss(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    """The (memory) broker killed half-way and restarted empty on the same port.

    Expected: the worker notices (exits non-zero, or /readyz stops answering 200) within
    ``BROKER_LOSS_NOTICE_S``; a supervisor then restarts it (here: the test, after killing it
    if it ran on) and the producers re-send their events from the start, as they must when the
    log they wrote to is gone. The final outcome must equal the fault-free run's.
    """
    w = env.worker("w0").start()
    half = len(records) // 2
    asyncio.run(Sender(env.settings, rate=RATE).send(records[:half]))
    time.sleep(1.0)
    env.broker.kill()
    env.broker.start()
    asyncio.run(create_topics(env.settings))
    deadline = time.monotonic() + BROKER_LOSS_NOTICE_S
    noticed = None
    while time.monotonic() < deadline:
        if not w.alive():
            noticed = f"exited with {w.proc.returncode}"
            break
        if not w.ready():
            noticed = "not ready"
            break
        time.sleep(0.5)
    notes["broker_loss_noticed"] = noticed or f"no: ran on for {BROKER_LOSS_NOTICE_S:.0f} s"
    w.kill9()  # the supervisor's restart (killed first if it ran on)
    w.start()
    sender = Sender(env.settings, rate=RATE)
    asyncio.run(sender.send(records))
    notes["quiet"] = _finish(env, sender, [w])
    return sender


def bad_records(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    w = env.worker("w0").start()
    sender = Sender(env.settings, rate=RATE, bad=BAD_RECORDS)
    asyncio.run(sender.send(records))
    notes["quiet"] = _finish(env, sender, [w], timeout=90)
    notes["bad_sent"] = dict(sender.sent_bad)
    return sender


def misrouted(env: Env, records: list[Any], notes: dict[str, Any]) -> Sender:
    w = env.worker("w0").start()
    sender = Sender(env.settings, rate=RATE, misroute=MISROUTE)
    asyncio.run(sender.send(records))
    notes["quiet"] = _finish(env, sender, [w])
    notes["misrouted"] = sender.misrouted
    return sender


SCENARIOS: dict[str, Callable[[Env, list[Any], dict[str, Any]], Sender]] = {
    "fault_free": fault_free,
    "kill9_early": _kill_restart(0.2),
    "kill9_late": _kill_restart(0.8),
    "two_workers_one_killed": two_workers_one_killed,
    "third_worker_joins": third_worker_joins,
    "redis_outage": redis_outage,
    "broker_loss": broker_loss,
    "bad_records": bad_records,
    "misrouted": misrouted,
}


def run_scenario(name: str, store: str, workdir: Path, records: list[Any]) -> Run:
    """Run one scenario in fresh processes and read its outcome."""
    t0 = time.monotonic()
    env = Env(workdir, store)
    notes: dict[str, Any] = {}
    try:
        sender = SCENARIOS[name](env, records, notes)
        outcome = read_outcome(env.settings)
        notes["worker_exits"] = {w.name: w.exits for w in env.workers}
        notes["workers_alive_at_end"] = [w.name for w in env.workers if w.alive()]
    finally:
        env.close()
    return Run(name, store, outcome, env.settings, round(time.monotonic() - t0, 1),
               notes.pop("quiet", {}), notes, sender)
