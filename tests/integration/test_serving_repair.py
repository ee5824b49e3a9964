"""Redis goes away while events flow and is caught up: afterwards every user's ``profile`` and
``rec`` key equals the last record per key on the Kafka topic.

Real Tansu broker, a real worker process, and a redis-server of the test's own that is, for
``OUTAGE_S`` seconds while events are produced, either shut down (SHUTDOWN NOSAVE) and restarted
empty, or paused (SIGSTOP: writes time out) with fewer owed writes allowed than the outage makes,
so that the worker drops them and re-syncs over the stale values Redis kept.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import redis

from schemas import Course, View
from streams.admin import create_topics
from streams.producer import produce
from tests.conftest import read_topic, run
from tests.redisserver import RedisServer

pytestmark = pytest.mark.integration
#: the serving copy does not depend on the table store: these run on one (the fault suite runs both)
memory_only = pytest.mark.parametrize("isolated", ["memory://"], indirect=True)
#: how long Redis is away while events are produced
OUTAGE_S = 10.0
T0 = 1_767_225_600_000
H = 3_600_000
COURSES = ("c1", "c2", "c3", "c4")


def _catalogue() -> list[Course]:
    return [Course(course_id=c, title=f"Course {c}", category="data", price=99.0, published_at=T0 - 90 * 24 * H,
                   tags=["data"]) for c in COURSES]


def _views(users: range, wave: int) -> list[View]:
    """Each user watches two courses (so they co-occur and every user gets a list)."""
    out = []
    for u in users:
        for j in range(2):
            course = COURSES[(u + wave + j) % len(COURSES)]
            out.append(View(event_id=f"u{u}-w{wave}-{j}", user_id=f"u{u}", ts=T0 + wave * H + u * 1000 + j,
                            schema_version=1, course_id=course, lesson_id="l1", watch_seconds=300.0,
                            progress=0.1 * (wave + 1)))
    return out


def _last_per_key(records) -> dict[str, bytes]:  # noqa: ANN001
    return {rec.key.decode(): rec.value for rec in records}


@memory_only
@pytest.mark.parametrize("outage", ["restarted-empty", "paused-over-the-owed-bound"])
def test_redis_after_an_outage_equals_the_last_record_per_key(isolated, worker_factory, tmp_path, outage):
    server = RedisServer(tmp_path).start()
    settings = dataclasses.replace(isolated, redis_url=server.url)
    if outage == "paused-over-the-owed-bound":
        settings = dataclasses.replace(settings, redis_max_owed=20)
    r = redis.Redis.from_url(settings.redis_url, **settings.redis_options())
    try:
        run(create_topics(settings))
        worker = worker_factory(settings)
        before = _views(range(40), 0)
        run(produce(settings, [*_catalogue(), *before]))
        worker.wait_until(lambda: worker.counter("events_in") >= len(before), what="the first events")
        worker.wait_until(lambda: r.exists(*(f"{settings.redis_prefix}profile:u{u}" for u in range(40))) == 40,
                          what="every first profile in Redis")

        server.stop() if outage == "restarted-empty" else server.pause()
        down_at = time.monotonic()
        sent = len(before)
        wave = 1
        while time.monotonic() - down_at < OUTAGE_S - 1:  # events for old and new users while Redis is away
            events = _views(range(wave * 5, 40 + wave * 5), wave)
            run(produce(settings, events))
            sent += len(events)
            wave += 1
            time.sleep(1.0)
        worker.wait_until(lambda: worker.counter("events_in") >= sent, what="the outage's events processed")
        stats = worker.stats()
        assert stats.get("redis_behind", 0) > 0 or stats.get("redis_resync_needed") == 1  # owed while away
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        # restarted empty: the marker key is gone; paused: more than 20 owed were dropped. Either
        # way the owed writes alone are not enough
        server.start() if outage == "restarted-empty" else server.resume()
        worker.wait_until(lambda: worker.counter("redis_resyncs") >= 1 and worker.stats().get("redis_behind") == 0
                          and worker.stats().get("redis_resync_needed") == 0, 90, "the re-sync")
        users = {f"u{u}" for u in range(40 + (wave - 1) * 5)}
        for kind, topic in (("profile", "user-profiles"), ("rec", "recommendations")):
            expected = _last_per_key(run(read_topic(settings, topic, idle=3.0)))
            # every user has a profile; a list, users with a course left to recommend
            assert set(expected) == users if kind == "profile" else len(expected) >= 10, (kind, len(expected))
            stored = dict(zip(expected, r.mget([f"{settings.redis_prefix}{kind}:{u}" for u in expected]), strict=True))
            wrong = sorted(u for u, value in expected.items() if stored[u] != value)
            assert not wrong, f"{len(wrong)} {kind} keys differ from the topic, e.g. {wrong[:5]}"
    finally:
        r.close()
        server.stop()


@memory_only
def test_read_latest_keeps_the_last_value_per_key_up_to_the_real_end(isolated):
    """Tansu does not compact and may answer "latest" one batch short: every batch is read."""
    from aiokafka import AIOKafkaProducer

    from streams.serving_resync import read_latest

    run(create_topics(isolated))
    topic = isolated.topic("user-profiles")

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=isolated.bootstrap_servers)
        await producer.start()
        try:
            for batch in range(5):  # five separate batches per partition, the last one alone
                for u in range(12):
                    await producer.send(topic, key=f"u{u}".encode(), value=f"v{batch}".encode(), partition=u % 2)
                await producer.flush()
            await producer.send_and_wait(topic, key=b"u0", value=b"last", partition=0)
            await producer.send_and_wait(topic, key=b"u1", value=None, partition=1)  # a tombstone
        finally:
            await producer.stop()

    run(send())
    latest = run(read_latest(isolated, topic, [0, 1], timeout_s=30))
    values = {k.decode(): v for k, (v, _) in latest.items()}
    assert values == {"u0": b"last", "u1": None, **{f"u{u}": b"v4" for u in range(2, 12)}}
    assert run(read_latest(isolated, topic, [1], timeout_s=30)).keys() == {f"u{u}".encode() for u in range(1, 12, 2)}
    assert run(read_latest(isolated, topic, [], timeout_s=30)) == {}
