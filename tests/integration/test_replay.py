"""`coursepulse replay`: an event file into the topics, in event-time order, through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from schemas import Course, Purchase, View, parse
from schemas.eventfile import write_events
from tests.conftest import read_topic, run

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000


def test_replay_produces_every_record_in_event_time_order(isolated, tmp_path):
    records = [Course(course_id="c1", title="One", category="k", price=1.0, published_at=T0 - 1000)]
    for i in range(60):
        uid = f"u{i % 7}"
        if i % 10 == 9:
            records.append(Purchase(event_id=f"e{i}", user_id=uid, ts=T0 + i * 1000, schema_version=1,
                                    amount=9.0, currency="CNY", order_id=f"o{i}", course_id="c1"))
        else:
            records.append(View(event_id=f"e{i}", user_id=uid, ts=T0 + i * 1000, schema_version=1,
                                course_id="c1", lesson_id="l", watch_seconds=5.0, progress=0.1))
    path = tmp_path / "events.jsonl"
    write_events(records, path)
    env = {**os.environ, **isolated.to_env()}
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), "--speed", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "replayed 61 records" in proc.stdout

    views = run(read_topic(isolated, "views", expected=54))
    purchases = run(read_topic(isolated, "purchases", expected=6))
    courses = run(read_topic(isolated, "courses", expected=1))
    assert (len(views), len(purchases), len(courses)) == (54, 6, 1)
    by_user: dict[bytes, list[int]] = {}
    for rec in views:  # within a partition (hence per user) the order is the file's
        by_user.setdefault(rec.key, []).append(parse(View, orjson.loads(rec.value)).ts)
    assert all(ts == sorted(ts) for ts in by_user.values())
    assert {parse(Purchase, orjson.loads(r.value)).event_id for r in purchases} == {f"e{i}" for i in range(9, 60, 10)}
