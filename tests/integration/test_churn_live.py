"""Churn on real worker processes: silence alerts, and learned state surviving a restart."""

from __future__ import annotations

import dataclasses
import random

import orjson
import pytest

from schemas import View, parse
from schemas.outputs import ChurnAlert
from streams.admin import create_topics
from streams.producer import produce
from tests.conftest import read_topic, run

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000
DAY = 86_400_000


def _traffic(days: int, users: int = 30, quiet_after: int = 10, seed: int = 3) -> list[View]:
    """Regular users every day; user 'quiet' stops after ``quiet_after`` days."""
    rng = random.Random(seed)
    out = []
    for day in range(days):
        for u in range(users):
            uid = f"u{u}"
            if rng.random() < 0.85:
                out.append(View(event_id=f"{uid}-{day}", user_id=uid, ts=T0 + day * DAY + rng.randrange(DAY // 2),
                                schema_version=1, course_id=f"c{u % 5}", lesson_id="l", watch_seconds=600.0,
                                progress=min(1.0, day / days)))
        if day < quiet_after:
            out.append(View(event_id=f"quiet-{day}", user_id="quiet", ts=T0 + day * DAY + 1000, schema_version=1,
                            course_id="c1", lesson_id="l", watch_seconds=600.0, progress=0.2))
    out.sort(key=lambda v: v.ts)
    return out


def test_silent_user_is_alerted_while_others_keep_the_watermark_moving(isolated, worker_factory):
    settings = dataclasses.replace(isolated, partitions=1)  # everyone shares one watermark
    run(create_topics(settings))
    worker = worker_factory(settings, COURSEPULSE_CHURN_THRESHOLD="0.35", COURSEPULSE_CHURN_RELEASE="0.2")
    events = _traffic(40)
    run(produce(settings, events))
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="all events processed")
    alerts = [parse(ChurnAlert, orjson.loads(r.value)) for r in run(read_topic(settings, "churn-alerts", idle=3))]
    quiet = [a for a in alerts if a.user_id == "quiet"]
    assert len(quiet) == 1, [(a.user_id, a.days_inactive, a.risk) for a in alerts]
    a = quiet[0]
    assert a.days_inactive >= 3 and a.risk >= 0.35 and a.factors and a.action
    assert a.generated_at > T0 + 10 * DAY


def test_learned_churn_state_survives_a_worker_restart(isolated, worker_factory):
    run(create_topics(isolated))
    env = {"COURSEPULSE_STORE": "rocksdb://", "COURSEPULSE_CHECKPOINT_EVENTS": "1"}
    worker = worker_factory(isolated, "w-restart", **env)
    events = _traffic(25)
    run(produce(isolated, events))
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="all events processed")
    before = {u: worker.get_json(f"/churn/{u}") for u in ("u1", "u7", "quiet")}
    assert all(b and b["examples_learned"] > 0 for b in before.values()), before
    assert worker.stop() == 0
    again = worker_factory(isolated, "w-restart", **env)  # same data dir: RocksDB + changelog
    again.wait_until(lambda: all(again.get_json(f"/churn/{u}") for u in before), 90, "state recovered")
    after = {u: again.get_json(f"/churn/{u}") for u in before}
    for u in before:
        assert after[u]["risk"] == pytest.approx(before[u]["risk"], abs=1e-9), u
        assert after[u]["examples_learned"] == before[u]["examples_learned"]


def test_partitions_share_their_churn_models_through_the_topic(isolated, worker_factory):
    """Every partition publishes its classifier's parameters on ``churn-model``; the worker reads
    them back into one merge, and a user is scored with the merge of every partition's labels."""
    run(create_topics(isolated))
    worker = worker_factory(isolated, COURSEPULSE_CHURN_SHARE_EVERY="10")
    events = _traffic(30, users=40)
    run(produce(isolated, events))
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="all events processed")
    worker.wait_until(lambda: worker.counter("churn_params_received") >= worker.counter("churn_params_sent") > 0,
                      30, "the published parameters read back")
    records = run(read_topic(isolated, "churn-model", idle=3))
    published = {orjson.loads(r.value)["partition"]: orjson.loads(r.value)["params"] for r in records}
    assert len(published) >= 2, sorted(published)  # users spread over the 4 partitions
    assert all(int(r.key) == orjson.loads(r.value)["partition"] for r in records)
    churn = worker.get_json("/churn/u1")
    assert churn["merged_labels"] is not None and churn["merged_labels"] > churn["examples_learned"] > 0, churn
    latest = sum(p["n"] for p in published.values())
    assert churn["merged_labels"] <= latest
