"""Metrics: every name the code uses is declared with HELP and labels; the exposition parses."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.step import COUNTERS as STEP_COUNTERS
from streams.metrics import CATALOGUE, PREFIX, Metrics, family_name
from streams.observe import OnlineHitRate

ROOT = Path(__file__).parents[2]
#: metrics.inc("name", ...) / metrics.set("name", ...) / metrics.observe("name", ...)
CALL = re.compile(r"""\bmetrics\.(?:inc|set|observe)\(\s*["']([a-z0-9_]+)["']""")
#: names the scrape-time sources (streams/observe.py) yield
SOURCED = re.compile(r"""yield\s+["']([a-z0-9_]+)["']""")


def _used_names() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("agents/*.py"), *ROOT.glob("streams/*.py")]:
        text = path.read_text()
        names.update(CALL.findall(text))
        if path.name == "observe.py":
            names.update(SOURCED.findall(text))
    names.update(STEP_COUNTERS)  # the ingest agent adds the step's counts to its metrics
    return names


def test_every_metric_the_code_uses_is_in_the_catalogue():
    used = _used_names()
    assert {"events_in", "dlq", "redis_behind", "consumer_lag", "event_output_latency_seconds"} <= used
    assert not used - set(CATALOGUE), f"declare these in streams.metrics.CATALOGUE: {sorted(used - set(CATALOGUE))}"


def test_catalogue_entries_have_help_a_type_and_label_names():
    for name, spec in CATALOGUE.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert spec.type in ("counter", "gauge", "histogram"), name
        assert len(spec.help) > 10 and spec.help.endswith("."), name
        assert all(re.fullmatch(r"[a-z_]+", label) for label in spec.labels), name


def test_exposition_parses_with_help_types_and_label_names():
    m = Metrics()
    m.inc("events_in", "views", by=3)
    m.inc("dlq", "decode")
    m.inc("model_restores", "retention:new")
    m.set("watermark_ms", 1234.0, "2")
    m.inc("gc_pause_ms_total", "gen0", by=1.5)
    m.observe("event_output_latency_seconds", 0.03, "views")
    m.observe("event_output_latency_seconds", 7.0, "views")
    m.add_source(lambda: [("consumer_lag", "views:1", 5)])
    m.inc("not_declared_anywhere", "x")
    families = {f.name: f for f in text_string_to_metric_families(m.prometheus())}
    assert all(f.documentation for f in families.values())
    assert {family_name(name) for name in CATALOGUE} <= set(families)

    def sample(family: str, suffix: str = "") -> list:
        return [(s.labels, s.value) for s in families[PREFIX + family].samples if s.name == PREFIX + family + suffix]

    assert sample("events_in", "_total") == [({"topic": "views"}, 3.0)]
    assert sample("model_restores", "_total") == [({"model": "retention", "outcome": "new"}, 1.0)]
    assert sample("watermark_ms") == [({"partition": "2"}, 1234.0)]
    assert sample("consumer_lag") == [({"topic": "views", "partition": "1"}, 5.0)]
    assert sample("gc_pause_ms", "_total") == [({"generation": "gen0"}, 1.5)]
    assert sample("recommendations_published", "_total") == [({}, 0.0)]  # declared: exported at 0
    buckets = dict((s.labels["le"], s.value) for s in families[PREFIX + "event_output_latency_seconds"].samples
                   if s.name.endswith("_bucket"))
    assert buckets["0.025"] == 0 and buckets["0.05"] == 1 and buckets["10.0"] == 2 and buckets["+Inf"] == 2
    assert families[PREFIX + "event_output_latency_seconds"].type == "histogram"
    assert "Not declared" in families[PREFIX + "not_declared_anywhere"].documentation


def test_snapshot_keeps_the_stats_json_shape():
    m = Metrics()
    m.inc("events_in", "views")
    m.inc("recommendations_published", by=2)
    m.set("redis_behind", 4.0)
    m.observe("event_output_latency_seconds", 0.2, "views")
    m.add_source(lambda: [("consumer_lag", "views:0", 9)])
    snap = m.snapshot()
    assert snap["events_in"] == {"views": 1.0} and snap["recommendations_published"] == 2.0
    assert snap["redis_behind"] == 4.0 and snap["consumer_lag"] == {"views:0": 9.0}
    assert snap["event_output_latency_seconds"]["views"] == {"count": 1, "sum": 0.2, "p50": 0.25, "p95": 0.25, "p99": 0.25}
    assert m.get("events_in", "views") == 1.0 and m.get("nothing") == 0.0


def test_a_failing_source_does_not_break_the_scrape():
    m = Metrics()

    def broken():  # noqa: ANN202
        msg = "boom"
        raise RuntimeError(msg)

    m.add_source(broken)
    m.set("redis_behind", 1.0)
    assert m.snapshot()["redis_behind"] == 1.0
    assert "coursepulse_redis_behind 1.0" in m.prometheus()


def test_online_hit_rate_counts_discoveries_against_the_previous_list():
    hr = OnlineHitRate(max_users=2)
    assert hr.observe("u", ["a"], ["b", "c"]) == (0, 0)  # the first list: nothing to resolve
    assert hr.observe("u", ["a", "b", "d"], ["e"]) == (2, 1)  # b was listed, d was not
    assert hr.rate == pytest.approx(0.5)
    assert hr.observe("u", ["a", "b", "d"], ["e"]) == (0, 0)  # a redelivery: nothing new
    hr.observe("v", ["x"], ["y"])
    hr.observe("w", ["x"], ["y"])  # evicts u (LRU of 2 users)
    assert hr.observe("u", ["a", "b", "d", "e"], ["f"]) == (0, 0)
    assert hr.observe("new", None, ["a"]) == (0, 0)  # no history known: not remembered
    assert hr.observe("new", ["a"], ["b"]) == (0, 0)
    assert hr.observe("new", None, ["c"]) == (0, 0)  # a list with no state write: history unchanged
    assert hr.observe("new", ["a", "c"], ["d"]) == (1, 1)
    with pytest.raises(ValueError, match="max_users"):
        OnlineHitRate(max_users=0)


def test_the_sensor_counts_hits_from_state_writes_and_lists():
    from types import SimpleNamespace

    from streams.observe import OpsSensor

    m = Metrics()
    sensor = OpsSensor(m, topic_prefix="p-")
    users = SimpleNamespace(name="users")

    def send_list(user: str, items: list[str]) -> None:
        value = orjson.dumps({"user_id": user, "items": [{"course_id": c} for c in items]})
        sensor.on_send_initiated(None, "p-recommendations", SimpleNamespace(value=value), 0, len(value))

    sensor.on_table_set(users, "u", {"courses": {"a": [0]}})
    send_list("u", ["b", "c"])
    sensor.on_table_set(users, "u", {"courses": {"a": [0], "b": [1], "x": [2]}})
    send_list("u", ["c"])
    assert m.get("rec_discoveries") == 2 and m.get("rec_discovery_hits") == 1 and m.get("rec_hit_rate") == 0.5
    assert m.get("records_sent", "recommendations") == 2
    dead = orjson.dumps({"error_kind": "decode", "original_b64": "AAAA", "original_text": "y" * 500})
    sensor.on_send_initiated(None, "p-events-dlq", SimpleNamespace(value=dead), 0, len(dead))
    (latest,) = sensor.latest("events-dlq")
    assert "original_b64" not in latest["record"] and len(latest["record"]["original_text"]) == 301


def test_churn_auc_is_exported_once_both_outcomes_were_seen():
    from types import SimpleNamespace

    from river import metrics as river_metrics

    from streams.observe import quality_source

    auc = river_metrics.ROCAUC(n_thresholds=20)
    rm = SimpleNamespace(churn=SimpleNamespace(n_learned=2, metric=auc))
    read = quality_source(lambda: {3: rm})
    auc.update(False, 0.2)
    auc.update(False, 0.4)
    assert list(read()) == [("churn_model_labels", "3", 2)]  # one class only: no AUC yet
    auc.update(True, 0.9)
    assert list(read())[1] == ("churn_model_auc", "3", 1.0)
