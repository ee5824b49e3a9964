"""Dead letters of kind wrong_partition (re-routing off) re-driven by the command line: each
record goes to its key's partition and lands in its owner's state once, however often re-driven.
(Mis-keyed records and --fix-key: tests/integration/test_operations.py.)"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

import orjson
import pytest

from schemas import View
from streams.admin import create_topics
from streams.dlq import read_dead_letters, redrive
from streams.partitioning import partition_for
from streams.settings import Settings
from tests.conftest import read_topic, run, send_to_wrong_partitions

pytestmark = pytest.mark.integration
NOW = 1_767_225_600_000


def _cli(settings: Settings, *argv: str) -> str:
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "dlq", *argv], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_wrong_partition_dead_letters_redriven_land_once_on_the_owner(services: Settings, worker_factory):
    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(services, topic_prefix=f"rd{tag}-", app_id=f"cp-rd-{tag}",
                                   redis_prefix=f"cp-test-rd-{tag}:", partitions=4, store="memory://")
    run(create_topics(settings))
    worker = worker_factory(settings, COURSEPULSE_REROUTE_MISPARTITIONED="false")
    users = [f"wp-{tag}-{i}" for i in range(4)]
    events = [View(event_id=f"{u}-v{j}", user_id=u, ts=NOW + j * 60_000, schema_version=1, course_id=f"c{j}",
                   lesson_id=f"l{j}", watch_seconds=60.0, progress=0.3) for u in users for j in range(2)]

    send_to_wrong_partitions(settings, events)
    worker.wait_until(lambda: worker.counter("dlq") >= len(events), what="every mis-partitioned record dead-lettered")
    assert worker.counter("events_in") == 0
    listed = [orjson.loads(line) for line in _cli(settings, "list", "--kind", "wrong_partition", "--json").splitlines()]
    assert len(listed) == len(events) and {d["error_kind"] for d in listed} == {"wrong_partition"}
    assert "would re-send 8 of 8" in _cli(settings, "redrive", "--kind", "wrong_partition", "--dry-run")
    assert worker.counter("events_in") == 0

    # the "fix" is on the producer's side: the same bytes and key, now on the key's partition
    assert "re-sent 8 of 8" in _cli(settings, "redrive", "--kind", "wrong_partition")
    worker.wait_until(lambda: worker.counter("events_in") >= len(events), what="the re-driven events applied")
    letters = run(read_dead_letters(settings, ["wrong_partition"]))
    counts = run(redrive(settings, letters, progress=True))  # twice, with the progress bar
    assert counts["sent"] == len(events)
    worker.wait_until(lambda: worker.counter("duplicates") >= len(events), what="the second redrive dropped as repeats")
    assert worker.counter("events_in") == len(events)
    latest = {}
    for rec in run(read_topic(settings, "user-profiles", idle=2.0)):
        profile = orjson.loads(rec.value)
        latest[profile["user_id"]] = (rec.partition, profile)
    assert set(latest) == set(users)
    for uid, (partition, profile) in latest.items():
        assert partition == partition_for(uid.encode(), settings.partitions)
        assert profile["views"] == 2  # once, after two redrives
