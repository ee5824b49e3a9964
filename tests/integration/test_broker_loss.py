"""A worker that loses its broker says so (/readyz 503) and exits non-zero instead of running on.

A standalone Tansu broker per test, on a port of its own, killed and restarted on the same port
(memory storage: a restarted broker is empty, as a cluster that lost its data).
"""

from __future__ import annotations

import dataclasses
import signal
import time

import pytest

from streams.admin import create_topics
from streams.embedded import free_port, start_tansu
from streams.health import EXIT_BROKER_LOST
from streams.producer import produce
from tests.conftest import run
from tests.integration.test_pipeline import _events

pytestmark = pytest.mark.integration
EXIT_S = 15


@pytest.fixture
def broker(tmp_path):
    """(port, start, kill): a Tansu broker that the test can kill and start again on the same port."""
    port = free_port()
    procs = []

    def start():  # noqa: ANN202
        procs.append(start_tansu(port, tmp_path / "tansu.log"))

    def kill() -> None:
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(timeout=10)

    start()
    yield port, start, kill
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def _ready_worker(isolated, worker_factory, port):  # noqa: ANN001, ANN202
    settings = dataclasses.replace(isolated, kafka_broker=f"kafka://127.0.0.1:{port}")
    run(create_topics(settings))
    worker = worker_factory(settings, COURSEPULSE_BROKER_LOSS_EXIT_S=str(EXIT_S))
    events = _events(users=10)
    run(produce(settings, events))
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="all events processed")
    worker.wait_until(lambda: worker.get_status("/readyz")[0] == 200, 30, "/readyz 200")
    time.sleep(2)  # the watch has seen the changelogs' ends
    return worker


def _wait_exit(worker, timeout: float) -> tuple[int, float]:  # noqa: ANN001
    t0 = time.monotonic()
    try:
        code = worker.proc.wait(timeout=timeout)
    except Exception:  # noqa: BLE001
        pytest.fail(f"the worker still runs {timeout:.0f} s after losing its broker:\n{worker.log_tail()}")
    return code, time.monotonic() - t0


def test_broker_gone_for_good_not_ready_then_exit_non_zero(isolated, worker_factory, broker):
    port, _start, kill = broker
    worker = _ready_worker(isolated, worker_factory, port)
    assert worker.get_status("/livez")[0] == 200
    kill()
    t0 = time.monotonic()
    worker.wait_until(lambda: worker.get_status("/readyz")[0] == 503, 15, "/readyz 503")
    status, body = worker.get_status("/readyz")
    assert status == 503 and any("broker" in r for r in body["reasons"]), body
    assert worker.get_status("/healthz")[0] == 200  # still running, still answering
    code, _ = _wait_exit(worker, EXIT_S + 30)
    waited = time.monotonic() - t0
    assert code == EXIT_BROKER_LOST
    assert EXIT_S - 1 <= waited <= EXIT_S + 30, waited
    assert "giving up" in worker.log_path.read_text() and "COURSEPULSE_BROKER_LOSS_EXIT_S" in worker.log_path.read_text()


def test_broker_back_empty_exit_non_zero(isolated, worker_factory, broker):
    port, start, kill = broker
    worker = _ready_worker(isolated, worker_factory, port)
    kill()
    worker.wait_until(lambda: worker.get_status("/readyz")[0] == 503, 15, "/readyz 503")
    start()  # same port, nothing kept: the changelogs the worker's state came from are gone
    code, waited = _wait_exit(worker, EXIT_S + 30)
    assert code == EXIT_BROKER_LOST
    assert waited < EXIT_S, "the loss of the changelogs is seen when the broker answers, not at the deadline"
    log = worker.log_path.read_text(errors="replace")
    assert "giving up: changelog topics are gone" in log or "lost records" in log, worker.log_tail()


async def _records_on(settings, prefix: str) -> dict[str, int]:  # noqa: ANN001
    """Per topic of ``prefix`` on the broker, how many records its partitions hold (ends summed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if t.startswith(prefix))
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {t: sum(end for tp, end in ends.items() if tp.topic == t) for t in topics}
    finally:
        await consumer.stop()


def test_broker_back_empty_receives_nothing_the_old_worker_had_not_delivered(isolated, worker_factory, broker):
    """A broker restarted empty while the worker still holds undelivered outputs and changelog
    writes: they are held from the broken connection on, and the worker gives up with them
    still held, so the new broker's topics stay empty (before the send gate, its producer
    re-sent them into the new broker within a second, and a restarted worker's recovery found
    changelogs of records it never wrote)."""
    port, start, kill = broker
    worker = _ready_worker(isolated, worker_factory, port)
    settings = dataclasses.replace(isolated, kafka_broker=f"kafka://127.0.0.1:{port}")
    before = worker.counter("events_in")
    busy = _events(users=400, per_user=8)
    run(produce(settings, busy))
    worker.wait_until(lambda: worker.counter("events_in") > before + 50, 30, "the worker busy with new events")
    kill()
    start()  # at once, on the same port, empty
    run(create_topics(settings))  # as an operator (or the fault suite) re-creates them
    code, _ = _wait_exit(worker, EXIT_S + 30)
    assert code == EXIT_BROKER_LOST
    log = worker.log_path.read_text(errors="replace")
    assert "holding produce requests" in log, worker.log_tail()
    held = run(_records_on(settings, settings.topic_prefix))
    assert held and not any(held.values()), f"records reached the restarted broker: {held}"
