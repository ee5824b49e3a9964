"""Events in -> profiles out, in Kafka and Redis; bad records to the DLQ, good ones untouched.

Real Tansu broker, real Redis, real worker processes.
"""

from __future__ import annotations

import base64
import random

import orjson
import pytest
import redis

from schemas import Purchase, Share, View, parse
from schemas.outputs import DeadLetter, UserProfile
from streams.admin import create_topics
from streams.producer import BAD_KINDS, ProduceStats, corrupt, produce, to_wire
from tests.conftest import read_topic, run, send_to_wrong_partitions

pytestmark = pytest.mark.integration
NOW = 1_767_225_600_000  # fixed event time: results do not depend on the wall clock
H = 3_600_000


def _events(users: int = 20, per_user: int = 6) -> list:
    out = []
    for u in range(users):
        uid = f"user-{u}"
        for i in range(per_user):
            ts = NOW - (per_user - i) * H
            out.append(View(event_id=f"{uid}-v{i}", user_id=uid, ts=ts, schema_version=1, course_id=f"c{i % 3}",
                            lesson_id=f"l{i}", watch_seconds=600.0, progress=min(1.0, 0.2 * (i + 1))))
        out.append(Purchase(event_id=f"{uid}-p", user_id=uid, ts=NOW, schema_version=1, amount=50.0 + u,
                            currency="CNY", order_id=f"o-{uid}", course_id="c7"))
        if u % 2 == 0:
            out.append(Share(event_id=f"{uid}-s", user_id=uid, ts=NOW + 1, schema_version=1, course_id="c7",
                             channel="wechat_group", share_id=f"sh-{uid}"))
    return out


def test_events_in_profiles_out_in_kafka_and_redis(isolated, worker_factory):
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    events = _events()
    run(produce(isolated, events))
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="all events processed")

    # the last profile of every user on the compacted topic, coalesced (far fewer than events)
    records = run(read_topic(isolated, "user-profiles", idle=3.0))
    latest = {}
    for rec in records:
        profile = parse(UserProfile, orjson.loads(rec.value))
        assert rec.key == profile.user_id.encode()
        latest[profile.user_id] = profile
    assert len(latest) == 20
    assert len(records) < len(events)
    p = latest["user-4"]
    assert (p.views, p.purchases, p.shares) == (6, 1, 1)
    assert p.spend == pytest.approx(54.0)
    assert p.watch_hours == pytest.approx(1.0)
    assert p.completed_courses == 2  # c1 and c2 reached progress >= 0.9; c0 stayed at 0.8
    assert p.last_ts == NOW + 1 and p.first_ts == NOW - 6 * H

    # the serving copy in Redis, and over HTTP from the worker
    r = redis.Redis.from_url(isolated.redis_url, **isolated.redis_options())
    stored = r.get(f"{isolated.redis_prefix}profile:user-4")
    assert stored is not None
    assert parse(UserProfile, orjson.loads(stored)) == p
    assert 0 < r.ttl(f"{isolated.redis_prefix}profile:user-4") <= isolated.redis_ttl_s
    assert worker.get_json("/profiles/user-4")["purchases"] == 1
    assert worker.get_json("/profiles/nobody") == None  # noqa: E711 - 404


def test_malformed_records_go_to_the_dlq_and_good_ones_are_all_processed(isolated, worker_factory):
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    rng = random.Random(5)
    good = _events(users=30, per_user=5)
    dlq_kinds = [k for k, to_dlq in BAD_KINDS.items() if to_dlq]

    async def send_mixed() -> ProduceStats:
        from aiokafka import AIOKafkaProducer

        stats = ProduceStats()
        producer = AIOKafkaProducer(bootstrap_servers=isolated.bootstrap_servers, max_request_size=1_048_576)
        await producer.start()
        try:
            for i, event in enumerate(good):
                topic, key, value = to_wire(event)
                await producer.send(isolated.topic(topic), key=key, value=value)
                stats.good[topic] += 1
                if i % 3 == 0:  # a bad record right after every third good one
                    kind = dlq_kinds[(i // 3) % len(dlq_kinds)]
                    bad_key, bad_value = corrupt(topic, key, value, kind, rng)
                    await producer.send(isolated.topic(topic), key=bad_key, value=bad_value)
                    stats.bad[kind] += 1
                if i % 7 == 0:  # an at-least-once repeat
                    await producer.send(isolated.topic(topic), key=key, value=value)
                    stats.bad["repeat"] += 1
            await producer.flush()
        finally:
            await producer.stop()
        return stats

    stats = run(send_mixed())
    n_good = sum(stats.good.values())
    worker.wait_until(
        lambda: worker.counter("events_in") >= n_good and worker.counter("dlq") >= stats.expected_dlq,
        what="every good event processed and every bad one rejected",
    )
    assert worker.counter("events_in") == n_good
    assert worker.counter("duplicates") == stats.bad["repeat"]

    dead = [parse(DeadLetter, orjson.loads(r.value)) for r in run(read_topic(isolated, "events-dlq", stats.expected_dlq))]
    assert len(dead) == stats.expected_dlq
    assert {d.error_kind for d in dead} == {"decode", "validation", "key_mismatch", "too_large"}
    for d in dead:
        assert d.source_topic.startswith(isolated.topic_prefix) and d.error
        assert d.offset >= 0 and 0 <= d.partition < isolated.partitions
        assert base64.b64decode(d.original_b64)  # the original bytes, whole

    # every user's state is exactly what the good events alone give
    profiles = {}
    for rec in run(read_topic(isolated, "user-profiles", idle=3.0)):
        value = orjson.loads(rec.value)
        profiles[value["user_id"]] = value
    assert len(profiles) == 30
    assert all(p["views"] == 5 and p["purchases"] == 1 for p in profiles.values())


def test_dead_letter_keeps_the_exact_original_bytes(isolated, worker_factory):
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    payload = b"\x00\x01not json at all \xff"

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=isolated.bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(isolated.topic("views"), key=b"u-x", value=payload)
        await producer.stop()

    run(send())
    worker.wait_until(lambda: worker.counter("dlq") >= 1, what="the DLQ record")
    (rec,) = run(read_topic(isolated, "events-dlq", 1))
    dead = parse(DeadLetter, orjson.loads(rec.value))
    assert rec.key == b"u-x"
    assert base64.b64decode(dead.original_b64) == payload
    assert dead.error_kind == "decode" and dead.source_topic == isolated.topic("views")


def test_mispartitioned_records_are_rerouted_to_the_owner(isolated, worker_factory):
    """A producer with another partitioner: every record lands on the wrong partition, is re-sent
    to the owning one, and each user's state is whole (one owner, every event once)."""
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    events = _events(users=12, per_user=4)
    n = send_to_wrong_partitions(isolated, events)
    worker.wait_until(lambda: worker.counter("events_in") >= n, what="every re-routed event processed")
    assert worker.counter("mispartitioned") == n
    assert worker.counter("events_in") == n and worker.counter("duplicates") == 0
    latest = {}
    for rec in run(read_topic(isolated, "user-profiles", idle=3.0)):
        profile = parse(UserProfile, orjson.loads(rec.value))
        latest[profile.user_id] = (rec.partition, profile)
    assert len(latest) == 12
    from streams.partitioning import partition_for
    for user_id, (partition, p) in latest.items():
        assert partition == partition_for(user_id.encode(), isolated.partitions)
        assert (p.views, p.purchases) == (4, 1)


def test_mispartitioned_records_are_dead_lettered_when_rerouting_is_off(isolated, worker_factory):
    run(create_topics(isolated))
    worker = worker_factory(isolated, COURSEPULSE_REROUTE_MISPARTITIONED="false")
    events = _events(users=3, per_user=2)
    n = send_to_wrong_partitions(isolated, events)
    worker.wait_until(lambda: worker.counter("dlq") >= n, what="every mis-partitioned record dead-lettered")
    assert worker.counter("events_in") == 0
    dead = [parse(DeadLetter, orjson.loads(r.value)) for r in run(read_topic(isolated, "events-dlq", n))]
    assert len(dead) == n and {d.error_kind for d in dead} == {"wrong_partition"}
    assert all("murmur2" in d.error for d in dead)
