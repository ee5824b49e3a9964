"""A worker killed with SIGKILL and restarted recovers its tables exactly, on Tansu too.

Tansu reports the end of a changelog partition one batch short; without the end-offset probe
(streams/recovery.py) the restarted worker stops recovering before the last batch (memory store:
users lose their latest writes) or refuses to start (RocksDB: Faust's consistency check).
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from schemas import View
from streams.admin import create_topics
from streams.producer import produce
from tests.conftest import read_topic, run
from tests.integration.test_pipeline import NOW, _events

pytestmark = pytest.mark.integration
USERS = 20


def _latest_profiles(settings) -> dict[str, dict]:  # noqa: ANN001
    latest: dict[str, dict] = {}
    for rec in run(read_topic(settings, "user-profiles", idle=3.0)):
        value = orjson.loads(rec.value)
        latest[value["user_id"]] = value
    return latest


# every store (the isolated fixture runs it on memory:// and rocksdb://), four partitions
def test_kill_and_restart_recovers_exact_tables(isolated, worker_factory):
    env = {"COURSEPULSE_END_OFFSET_PROBE": "on",
           # with the true ends, Faust's check holds: on here, so a short end would stop the worker
           "COURSEPULSE_RECOVERY_CONSISTENCY_CHECK": "true"}
    run(create_topics(isolated))
    worker = worker_factory(isolated, **env)
    events = _events(users=USERS)
    run(produce(isolated, events))
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="all events processed")
    worker.wait_until(lambda: len(_latest_profiles(isolated)) == USERS, what="every profile published")
    time.sleep(4)  # past Faust's commit interval (2.8 s): the restart starts after these events
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)

    restarted = worker_factory(isolated, **env)  # same name: same data directory and log
    restarted.wait_until(lambda: (restarted.get_json("/readyz") or {}).get("ready") is True, 90,
                         "recovery completed")
    # one more view per user: each profile then counts what the recovered state held, plus one
    more = [View(event_id=f"user-{u}-after", user_id=f"user-{u}", ts=NOW + 10, schema_version=1, course_id="c9",
                 lesson_id="l9", watch_seconds=60.0, progress=0.1) for u in range(USERS)]
    run(produce(isolated, more))
    restarted.wait_until(lambda: restarted.counter("events_in") >= USERS, what="the new events processed")

    def all_updated() -> bool:
        latest = _latest_profiles(isolated)
        return len(latest) == USERS and all(p["last_ts"] >= NOW + 10 for p in latest.values())

    restarted.wait_until(all_updated, 30, "profiles with the new views")
    profiles = _latest_profiles(isolated)
    assert len(profiles) == USERS
    wrong = {u: (p["views"], p["purchases"], p["shares"]) for u, p in profiles.items()
             if (p["views"], p["purchases"], p["shares"]) != (7, 1, 1 - int(u.split("-")[1]) % 2)}
    assert not wrong, f"state not recovered exactly: {wrong}"
    # the restarted worker re-read nothing it had already applied (state and offsets agree)
    assert restarted.counter("events_in") == USERS
    assert "Traceback" not in restarted.log_tail(400)
