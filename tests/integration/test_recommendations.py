"""Events in -> recommendations out: in the topic, in Redis and over HTTP, on Tansu + Redis.

Co-occurrence increments travel through ``course-cooc`` (repartitioned by course), neighbour
lists through ``course-neighbours`` (read by every worker), so this exercises the whole path.
"""

from __future__ import annotations

import time

import orjson
import pytest
import redis

from schemas import Course, Purchase, View, parse
from schemas.outputs import Recommendations
from streams.admin import create_topics
from streams.producer import produce
from tests.conftest import read_topic, run

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000
H = 3_600_000


def _catalogue() -> list[Course]:
    cats = {"c1": "data", "c2": "data", "c3": "data", "c4": "design", "c5": "design", "c6": "music"}
    return [Course(course_id=c, title=f"Course {c}", category=cat, price=99.0, published_at=T0 - 90 * 24 * H,
                   tags=[cat]) for c, cat in cats.items()]


def _view(uid: str, course: str, i: int, ts: int, progress: float = 0.5, rec_id: str | None = None) -> View:
    return View(event_id=f"{uid}-{course}-{i}", user_id=uid, ts=ts, schema_version=1, course_id=course,
                lesson_id="l1", watch_seconds=300.0, progress=progress, rec_id=rec_id)


def _history() -> list:
    """20 users who watch c1 then c2 (c1 and c2 co-occur); others watch c4 and c5."""
    events: list = []
    for u in range(20):
        events += [_view(f"a{u}", "c1", 0, T0 + u * H), _view(f"a{u}", "c2", 1, T0 + u * H + 60_000)]
    for u in range(10):
        events += [_view(f"b{u}", "c4", 0, T0 + u * H), _view(f"b{u}", "c5", 1, T0 + u * H + 60_000)]
    return events


def test_activity_yields_ranked_explained_recommendations_everywhere(isolated, worker_factory):
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    run(produce(isolated, [*_catalogue(), *_history()]))
    worker.wait_until(lambda: "c2" in dict((worker.get_json("/neighbours/c1") or {}).get("neighbours", [])),
                      what="c1's neighbours broadcast")

    # a new user watches c1: c2 (watched with c1 by 20 users) must lead the list, with its reason
    run(produce(isolated, [_view("newbie", "c1", 0, T0 + 30 * H)]))
    worker.wait_until(lambda: worker.get_json("/recommendations/newbie") is not None, 30, "newbie's list in Redis")
    recs = parse(Recommendations, worker.get_json("/recommendations/newbie"))
    assert recs.items[0].course_id == "c2"
    assert recs.items[0].reason == "because you watched Course c1"
    assert "c1" not in [i.course_id for i in recs.items]  # never what the user is already taking
    assert recs.event_id == "newbie-c1-0" and recs.model_versions

    stored = redis.Redis.from_url(isolated.redis_url, **isolated.redis_options()).get(f"{isolated.redis_prefix}rec:newbie")
    assert parse(Recommendations, orjson.loads(stored)) == recs
    on_topic = [parse(Recommendations, orjson.loads(r.value)) for r in run(read_topic(isolated, "recommendations", idle=2))]
    assert any(r.user_id == "newbie" and r.rec_id == recs.rec_id for r in on_topic)

    # the user buys the recommended course (attributed to the list): it is never recommended again
    buy = Purchase(event_id="newbie-buy", user_id="newbie", ts=T0 + 31 * H, schema_version=1, amount=99.0,
                   currency="CNY", order_id="o-newbie", course_id="c2", rec_id=recs.rec_id)
    run(produce(isolated, [buy]))
    worker.wait_until(lambda: (worker.get_json("/recommendations/newbie") or {}).get("event_id") == "newbie-buy",
                      30, "a fresh list after the purchase")
    after = parse(Recommendations, worker.get_json("/recommendations/newbie"))
    assert "c2" not in [i.course_id for i in after.items]
    assert worker.stats()["rec_attributed"]["purchases"] == 1


def test_new_course_is_recommended_before_anyone_watched_it(isolated, worker_factory):
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    fresh = Course(course_id="c9", title="Brand new data course", category="data", price=49.0,
                   published_at=T0 + 20 * H, tags=["data"])
    run(produce(isolated, [*_catalogue(), fresh, *_history()]))
    worker.wait_until(lambda: worker.counter("catalogue_updates") >= 7, what="catalogue read")
    run(produce(isolated, [_view("fan", "c1", 0, T0 + 30 * H)]))
    worker.wait_until(lambda: worker.get_json("/recommendations/fan") is not None, 30, "fan's list")
    items = {i["course_id"]: i["reason"] for i in worker.get_json("/recommendations/fan")["items"]}
    assert items.get("c9") == "new in data"
    time.sleep(0)  # nothing else to wait for
