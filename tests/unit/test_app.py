"""The app factory, the one topic registry and the providers web reads (nothing running)."""

from __future__ import annotations

import dataclasses

import pytest

from schemas import codec, jsonschema
from schemas.events import Event
from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, PUBLIC_TOPICS, TOPICS, spec
from streams import admin, providers
from streams.app import create_app
from streams.settings import Settings


def test_create_app_builds_a_fresh_app_from_the_settings_it_is_given() -> None:
    a = create_app(Settings.from_env({}, app_id="one", partitions=3, kafka_broker="kafka://127.0.0.1:1"))
    b = create_app(Settings.from_env({}, app_id="two", partitions=5))
    assert a is not b
    assert (a.conf.id, a.conf.topic_partitions, str(a.conf.broker[0])) == ("one", 3, "kafka://127.0.0.1:1")
    assert (b.conf.id, b.conf.topic_partitions) == ("two", 5)
    assert not a.conf.autodiscover  # agents are loaded by streams.app.load_agents, failing loudly


def test_the_registry_names_every_topic_once_and_everyone_reads_it() -> None:
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    assert admin.ALL_TOPICS == tuple(names)
    assert admin.COMPACTED == {t.name for t in TOPICS if t.compacted} == {"courses", "user-profiles", "course-neighbours", "churn-model"}
    assert list(jsonschema.ALL_TOPICS) == list(PUBLIC_TOPICS)
    assert all(jsonschema.ALL_TOPICS[n] is spec(n).record for n in PUBLIC_TOPICS)
    assert INPUT_TOPICS == ("views", "purchases", "shares")
    assert codec.INPUT_TYPES == {n: spec(n).record for n in INPUT_TOPICS}
    assert all(issubclass(spec(n).record, Event) and spec(n).key == "user_id" for n in INPUT_TOPICS)
    assert OUTPUT_TOPICS == ("recommendations", "churn-alerts", "referral-candidates", "user-profiles", "events-dlq")
    assert all(t.record is None for t in TOPICS if t.internal)


def test_the_registry_refuses_unknown_names_and_is_frozen() -> None:
    with pytest.raises(KeyError, match="unknown topic 'nope'"):
        spec("nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec("views").compacted = True  # type: ignore[misc]


def test_providers_are_looked_up_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_providers", {})
    assert providers.lookup("double") is None

    @providers.provide("double")
    def double(x: int) -> int:
        return 2 * x

    assert providers.lookup("double") is double
    assert double(4) == 8  # returned unchanged
