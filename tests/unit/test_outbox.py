"""The outbox: one producer batch per topic partition, in order; a failed batch stops the commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faust.exceptions import ProducerSendError

from streams.outbox import Outbox
from streams.partitioning import partition_for


class _Topic:
    def __init__(self, name: str, partitions: int = 4) -> None:
        self.name, self.partitions, self.sent = name, partitions, []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key: bytes, value: bytes, partition: int) -> None:
        self.sent.append((key, value, partition))


class _Producer:
    """aiokafka's real batch builder; the hand-over to the sender recorded, its outcome chosen."""

    def __init__(self, fail: bool = False) -> None:
        self.real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started: builds batches only
        self.batches: list[tuple[str, int, int]] = []
        self.fail = fail

    def create_batch(self) -> Any:  # noqa: ANN401
        return self.real.create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:  # noqa: ANN401
        self.batches.append((topic, partition, batch.record_count()))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("NotLeaderForPartition"))
        else:
            fut.set_result(None)
        return fut


class _Sensors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:  # noqa: ANN401
        self.seen.append((topic, message.value))


class _App:
    def __init__(self, producer: _Producer) -> None:
        self.sensors = _Sensors()
        self._producer = producer
        self.conf = type("Conf", (), {"topic_partitions": 4})()
        self.producer = type("FaustProducer", (), {"_ensure_producer": lambda _self: producer})()


def test_records_go_as_one_batch_per_topic_partition_and_every_one_is_seen_by_the_sensors():
    async def run() -> tuple[_App, _Producer]:
        producer = _Producer()
        app = _App(producer)
        box = Outbox(app, direct=True)
        profiles, links = _Topic("user-profiles"), _Topic("referral-links", partitions=12)
        for i in range(5):
            box.add(profiles, f"u{i}".encode(), b"p%d" % i, partition=i % 2)
        box.add(links, b"share-1", b"link")  # no partition: murmur2 of the key
        assert len(box) == 6
        assert await box.send() == 6
        assert len(box) == 0 and await box.send() == 0
        await box.wait_delivered()
        return app, producer

    app, producer = asyncio.run(run())
    assert sorted(producer.batches) == sorted([("user-profiles", 0, 3), ("user-profiles", 1, 2),
                                               ("referral-links", partition_for(b"share-1", 12), 1)])
    assert [v for t, v in app.sensors.seen if t == "user-profiles"] == [b"p0", b"p2", b"p4", b"p1", b"p3"]


def test_a_batch_that_was_not_delivered_fails_the_flush_before_the_commit():
    async def run() -> None:
        box = Outbox(_App(_Producer(fail=True)), direct=True)
        box.add(_Topic("recommendations"), b"u1", b"list", partition=0)
        await box.send()
        await box.wait_delivered()

    with pytest.raises(ProducerSendError, match="1 of 1 output batches were not delivered"):
        asyncio.run(run())


def test_not_direct_every_record_goes_through_topic_send_in_order():
    async def run() -> _Topic:
        producer = _Producer()
        box = Outbox(_App(producer), direct=False)
        topic = _Topic("churn-alerts")
        box.add(topic, b"u1", b"a", partition=2)
        box.add(topic, b"u2", b"b", partition=2)
        await box.send()
        assert producer.batches == []
        return topic

    assert asyncio.run(run()).sent == [(b"u1", b"a", 2), (b"u2", b"b", 2)]
