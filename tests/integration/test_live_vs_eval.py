"""One file, two paths: a real worker on the embedded broker and ``coursepulse eval``'s code path
(:func:`tools.evaluate.build_evaluator`) find the same state and the same last list per user.

Both fold events with the same step (``models/step.py``). The file ends with one share per user,
an hour of event time after everything else (shares change no co-occurrence). The live run gets
the rest of the file first and waits until every co-occurrence update has been applied; then
the worker is restarted, and on assignment it republishes every row's neighbour list from the
popularity of its courses at that time; eval does the same at that point of the file
(``reassign_partitions``). Then the final shares come, so each user's last list is ranked, on
both paths, at that share with the neighbour lists recomputed from the whole file. The restart
is the one thing the test arranges: between two assignments a row's neighbour list is
recomputed only when the row changes, from the other courses' popularity at that tick; the
worker ticks on a wall-clock timer and eval on the same interval of event time, so the lists of
rows that did not change since differ in how stale they are, until every row is recomputed.
The co-occurrence rows themselves (what both paths learn) are compared after the run too.

The live run also gets the events in waves: the first event of every user, then (once those are
processed) the second of every user, and so on, so each user's events are applied in the file's
order. The worker reads three topics, and Kafka fixes no order between them: a user's view and
purchase sent together can be applied in either order, and the co-occurrence gains of a rise
are stored at the rise's event time, so the rows (not the states) would differ by the decay
between the two events (about 1e-3 here). Eval applies a user's events in the file's order.

Compared, for every user: every state field (the two that keep arrival order, ``seen`` (the
de-duplication memory's fingerprints) and ``owned``, as sets: the worker reads three topics whose interleaving Kafka does not fix;
floats to 1e-9 relative), and the last list's trigger event, time, items, order and reasons.
Items whose published scores are equal are a tie that the ranking kernel breaks by catalogue
position (the worker numbers courses in the order it hears of them), so within a run of equal
scores the order is not compared, only the set (and at the list's cut, only the count).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.profile import FP_CHARS
from models.step import list_signature
from schemas import Course, Purchase, Share, View
from schemas.eventfile import read_events, write_events
from streams.admin import create_topics
from streams.producer import produce
from streams.settings import Settings
from tests.conftest import read_topic, run
from tools.evaluate import build_evaluator

pytestmark = pytest.mark.integration
NOW = 1_767_225_600_000  # fixed event time: results do not depend on the wall clock
MIN = 60_000
DAY = 86_400_000
USERS = 60
COURSES = 40
CHANNELS = ("wechat_moments", "wechat_group", "link")


def _file(path: Path, seed: int = 3) -> int:
    """Write the test's event file; return how many records come before the final shares."""
    rng = random.Random(seed)
    cats = [f"cat{i}" for i in range(6)]
    courses = [Course(course_id=f"c{i:02d}", title=f"Course {i}", category=cats[i % len(cats)], price=float(20 + i),
                      published_at=NOW - (i * 37 % 29) * DAY - i * MIN, tags=[]) for i in range(COURSES)]
    events: list[Any] = []
    for u in range(USERS):
        uid = f"user-{u:03d}"
        liked = rng.sample(cats, 2)
        pool = [c.course_id for c in courses if c.category in liked] + rng.sample([c.course_id for c in courses], 4)
        t = NOW - 6 * DAY + rng.randrange(2 * DAY)
        progress: dict[str, float] = {}
        for j in range(rng.randrange(6, 16)):
            t += rng.choice((rng.randrange(1, 20) * MIN, rng.randrange(2, 30) * 3_600_000))
            course = rng.choice(pool)
            r = rng.random()
            if r < 0.75:
                p = min(1.0, progress.get(course, 0.0) + rng.choice((0.1, 0.25, 0.5, 0.95)))
                progress[course] = p
                events.append(View(event_id=f"{uid}-v{j}", user_id=uid, ts=t, schema_version=1, course_id=course,
                                   lesson_id=f"l{j}", watch_seconds=float(rng.randrange(30, 1800)), progress=p))
            elif r < 0.9:
                events.append(Purchase(event_id=f"{uid}-p{j}", user_id=uid, ts=t, schema_version=1,
                                       amount=float(rng.randrange(10, 300)), currency="CNY", order_id=f"o-{uid}-{j}",
                                       course_id=course))
            else:
                events.append(Share(event_id=f"{uid}-s{j}", user_id=uid, ts=t, schema_version=1, course_id=course,
                                    channel=rng.choice(CHANNELS), share_id=f"sh-{uid}-{j}"))
    events.sort(key=lambda e: (e.ts, e.event_id))
    end = events[-1].ts + 3_600_000
    final = [Share(event_id=f"user-{u:03d}-last", user_id=f"user-{u:03d}", ts=end + u, schema_version=1,
                   course_id=f"c{u % COURSES:02d}", channel="link", share_id=f"sh-user-{u:03d}-last")
             for u in range(USERS)]
    write_events([*courses, *events, *final], path)
    return len(courses) + len(events)


def _waves(records: list[Any]) -> list[list[Any]]:
    """The catalogue and every user's first event, then every user's second event, and so on."""
    waves: list[list[Any]] = [[r for r in records if isinstance(r, Course)]]
    seen: dict[str, int] = {}
    for r in records:
        if not isinstance(r, Course):
            k = seen[r.user_id] = seen.get(r.user_id, 0) + 1
            if k == len(waves):
                waves.append([])
            waves[k].append(r)
    return waves


async def _changelog(settings: Settings, table: str) -> dict[str, dict[str, Any]]:
    """The last value per key of a table's changelog (Faust writes str keys JSON-encoded)."""
    topic = f"{settings.app_id}-{table}-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    out: dict[str, dict[str, Any]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last = time.monotonic()
        while time.monotonic() - last < 2.0:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    key = r.key.decode()
                    out[orjson.loads(key) if key.startswith('"') else key] = orjson.loads(r.value)
            if any(batch.values()):
                last = time.monotonic()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return out


def _wait_settled(worker, min_published: int = 1) -> None:  # noqa: ANN001 - tests.conftest.WorkerProcess
    """Every co-occurrence update applied and every changed row's neighbours in the index: the
    counts agree and stay put over more than one neighbour-refresh interval."""
    def counts() -> tuple[float, ...]:
        c = worker.counter
        return (c("cooc_updates_sent"), c("cooc_updates_applied"), c("neighbour_lists_published"),
                c("neighbour_lists_received"))

    previous: list[tuple[float, ...]] = []

    def settled() -> bool:
        now = counts()
        previous.append(now)
        sent, applied, published, received = now
        stable = len(previous) > 12 and len(set(previous[-12:])) == 1  # 12 polls, 0.2 s apart
        return sent == applied and published >= min_published and received >= published and stable

    worker.wait_until(settled, timeout=90, what="co-occurrence applied and neighbour lists received")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _state_diff(live: dict[str, Any], offline: dict[str, Any]) -> list[str]:
    diffs = []
    for name in sorted(live.keys() | offline.keys()):
        a, b = live.get(name), offline.get(name)
        if name == "rec_sig":  # a ranking: ties may be ordered apart (checked against each list)
            continue
        if name == "seen":  # the de-duplication memory: fingerprints in arrival order
            a, b = (sorted(x[i:i + FP_CHARS] for i in range(0, len(x), FP_CHARS)) for x in (a, b))
        elif name == "owned":
            a, b = sorted(a), sorted(b)
        if not _close(a, b):
            diffs.append(f"{name}: live {a!r} != eval {b!r}")
    return diffs


def _list_diff(live: list[tuple[str, float, str]], offline: list[tuple[str, float, str]], n: int) -> list[str]:
    """Same length, scores, and items in score order (ties as sets; a tie cut by the list's end by count)."""
    if len(live) != len(offline):
        return [f"{len(live)} items live, {len(offline)} in eval"]
    diffs = []
    i = 0
    while i < len(live):
        j = i
        while j < len(live) and abs(live[j][1] - live[i][1]) <= 1e-6:
            j += 1
        a, b = live[i:j], offline[i:j]
        if any(abs(x[1] - y[1]) > 1e-6 for x, y in zip(a, b, strict=True)):
            diffs.append(f"scores at {i}..{j - 1}: live {a} != eval {b}")
        elif not (j == len(live) == n):  # a tie at the cut may keep different members of the tie
            if {(c, r) for c, _, r in a} != {(c, r) for c, _, r in b}:
                diffs.append(f"items at {i}..{j - 1}: live {a} != eval {b}")
        i = j
    return diffs


def test_live_worker_and_eval_agree_on_every_users_state_and_last_list(isolated, worker_factory, tmp_path):
    # lists are published when they change or when the last one is this old (event time): the
    # final shares come an hour after everything else, so each user's last list is published
    isolated = dataclasses.replace(isolated, rec_republish_s=3600.0)
    path = tmp_path / "events.jsonl"
    before_final = _file(path)
    records = list(read_events(path))

    # -- live: a real worker on the embedded broker
    run(create_topics(isolated))
    worker = worker_factory(isolated)
    n_events = 0
    for wave in _waves(records[:before_final]):
        run(produce(isolated, wave))
        n_events += sum(1 for r in wave if not isinstance(r, Course))
        worker.wait_until(lambda n=n_events: worker.counter("events_in") >= n, timeout=120, what="a wave processed")
    _wait_settled(worker)
    assert worker.counter("duplicates") == 0 and worker.counter("dlq") == 0
    rows = run(_changelog(isolated, "cooc"))
    worker.stop()
    worker = worker_factory(isolated)  # the same data directory: a restart
    _wait_settled(worker, min_published=len(rows))  # every row republished on assignment
    run(produce(isolated, records[before_final:]))
    worker.wait_until(lambda: worker.counter("events_in") >= USERS, what="the final shares processed")
    expected_last = {f"user-{u:03d}": f"user-{u:03d}-last" for u in range(USERS)}

    def last_lists() -> dict[str, dict[str, Any]]:
        out = {}
        for rec in run(read_topic(isolated, "recommendations", idle=2.0)):
            value = orjson.loads(rec.value)
            out[value["user_id"]] = value
        return out

    deadline = time.monotonic() + 60
    live_lists = last_lists()
    while any(live_lists.get(u, {}).get("event_id") != e for u, e in expected_last.items()):
        assert time.monotonic() < deadline, "the lists of the final shares never all arrived"
        live_lists = last_lists()
    live_states = run(_changelog(isolated, "users"))
    assert worker.counter("dlq") == 0

    # -- eval: the code path of `coursepulse eval`, with the worker's settings
    evaluator = build_evaluator(isolated)
    evaluator.run(records[:before_final])
    assert evaluator.reassign_partitions() == len(rows)  # as the restarted worker did
    evaluator.run(records[before_final:])

    # the co-occurrence rows both paths learned (CoocRises + cooc_gains_batch, merged per batch)
    offline_rows = evaluator.recommender.rows.entries
    assert set(rows) == set(offline_rows)
    row_diffs = [c for c in rows if not _close(rows[c], offline_rows[c])]
    assert not row_diffs, f"{len(row_diffs)} co-occurrence rows differ, e.g. {rows[row_diffs[0]]} != {offline_rows[row_diffs[0]]}"

    assert set(live_states) == set(evaluator.states) == set(expected_last)
    state_diffs = {u: d for u in live_states if (d := _state_diff(live_states[u], evaluator.states[u].to_dict()))}
    # each path's state records the signature of the list it published last (compared below with
    # ties as sets, so here each against its own list); a changed list was published by both
    for user, (_, items) in evaluator.last_lists.items():
        assert evaluator.states[user].rec_sig == list_signature(items)
        live = [(i["course_id"], i["score"], i["reason"]) for i in live_lists[user]["items"]]
        assert live_states[user]["rec_sig"] == list_signature(live)
    assert not state_diffs, f"{len(state_diffs)} users' state differ: {dict(list(state_diffs.items())[:3])}"

    assert set(evaluator.last_lists) == set(expected_last)
    list_diffs = {}
    for user, (trigger, items) in evaluator.last_lists.items():
        live = live_lists[user]
        assert (live["event_id"], live["generated_at"]) == (trigger.event_id, trigger.ts)
        live_items = [(i["course_id"], i["score"], i["reason"]) for i in live["items"]]
        if d := _list_diff(live_items, items, isolated.rec_n):
            list_diffs[user] = d
    assert not list_diffs, f"{len(list_diffs)} users' last lists differ: {dict(list(list_diffs.items())[:3])}"
    # not a vacuous comparison: full lists with neighbour-based items
    assert sum(len(items) for _, items in evaluator.last_lists.values()) >= USERS * isolated.rec_n // 2
    assert any(r.startswith("because you") for _, items in evaluator.last_lists.values() for _, _, r in items)

