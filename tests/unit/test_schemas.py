"""Schemas: round-trips (Hypothesis), timestamps, and a clear reason for every kind of bad input."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    ChurnAlert,
    Factor,
    Purchase,
    RecItem,
    Recommendations,
    RejectedRecord,
    Share,
    UserProfile,
    ValidationError,
    View,
    decode_event,
    encode,
    format_ts,
    parse,
    parse_ts,
    to_dict,
)
from schemas.events import SHARE_CHANNELS
from streams.producer import to_wire

NOW = 1_800_000_000_000
ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
times = st.integers(min_value=0, max_value=NOW)
fractions = st.floats(min_value=0, max_value=1, allow_nan=False)
amounts = st.floats(min_value=0, max_value=10_000, allow_nan=False)


def views() -> st.SearchStrategy[View]:
    return st.builds(View, event_id=ids, user_id=ids, ts=times, schema_version=st.just(1), course_id=ids,
                     lesson_id=ids, watch_seconds=st.floats(0, 86_400), progress=fractions,
                     rec_id=st.none() | ids)


def purchases() -> st.SearchStrategy[Purchase]:
    return st.builds(
        lambda course, **kw: Purchase(course_id=course, plan=None if course else "monthly", **kw),
        course=st.none() | ids, event_id=ids, user_id=ids, ts=times, schema_version=st.just(1),
        amount=amounts, currency=st.sampled_from(["CNY", "USD", "EUR"]), order_id=ids,
        share_id=st.none() | ids, rec_id=st.none() | ids,
    )


def shares() -> st.SearchStrategy[Share]:
    return st.builds(Share, event_id=ids, user_id=ids, ts=times, schema_version=st.just(1), course_id=ids,
                     channel=st.sampled_from(SHARE_CHANNELS), share_id=ids)


@settings(max_examples=150)
@given(st.one_of(views(), purchases(), shares()))
def test_input_events_round_trip_through_the_wire(event):
    topic, key, value = to_wire(event)  # ISO-8601 timestamps, as producers send them
    assert decode_event(topic, key, value, now_ms=NOW) == event
    assert decode_event(topic, key, encode(event), now_ms=NOW) == event  # epoch millis too


profiles = st.builds(
    UserProfile, user_id=ids, segment=st.sampled_from(["new", "active", "loyal", "at-risk", "dormant", "churned"]),
    activity=amounts, loyalty=amounts, recency_days=amounts, rfm=st.from_regex(r"[1-5]{3}", fullmatch=True),
    views=st.integers(0, 10**6), purchases=st.integers(0, 1000), shares=st.integers(0, 1000),
    sessions=st.integers(0, 10**5), active_days=st.integers(0, 10**4), watch_hours=amounts,
    completed_courses=st.integers(0, 100), spend=amounts, tenure_days=amounts, first_ts=times, last_ts=times,
    recent_courses=st.lists(ids, max_size=5), updated_at=times,
)
recs = st.builds(
    Recommendations, rec_id=ids, user_id=ids,
    items=st.lists(st.builds(RecItem, course_id=ids, score=amounts, reason=st.text(max_size=40)), max_size=10),
    model_versions=st.dictionaries(ids, ids, max_size=3), generated_at=times, event_id=ids,
)
alerts = st.builds(
    ChurnAlert, alert_id=ids, user_id=ids, risk=fractions, threshold=fractions, days_inactive=amounts,
    segment=st.just("at-risk"), factors=st.lists(st.builds(Factor, name=ids, value=amounts, contribution=amounts), max_size=3),
    action=st.text(max_size=30), generated_at=times,
)


@settings(max_examples=100)
@given(st.one_of(profiles, recs, alerts))
def test_output_records_round_trip(record):
    assert parse(type(record), orjson.loads(encode(record))) == record


@settings(max_examples=100)
@given(st.one_of(profiles, recs, alerts))
def test_encode_writes_the_bytes_of_the_plain_dict(record):
    """orjson's own dataclass writer gives the bytes of the field-by-field dict, key order included."""
    assert encode(record) == orjson.dumps(to_dict(record))


def test_parse_ts_accepts_iso_with_offset_and_epoch_millis():
    assert parse_ts("2024-01-02T03:04:05Z") == 1_704_164_645_000
    assert parse_ts("2024-01-02T11:04:05+08:00") == 1_704_164_645_000
    assert parse_ts("2024-01-02T03:04:05.250+00:00") == 1_704_164_645_250
    assert parse_ts(1_704_164_645_000) == 1_704_164_645_000
    assert parse_ts(format_ts(1_704_164_645_250)) == 1_704_164_645_250


@pytest.mark.parametrize("value", ["2024-01-02T03:04:05", "yesterday", 1.5e12, True, -1, None, "2024-13-45T00:00:00Z"])
def test_parse_ts_rejects_naive_garbage_and_wrong_types(value):
    with pytest.raises(ValidationError):
        parse_ts(value)


GOOD_VIEW = {"event_id": "e1", "user_id": "u1", "ts": "2026-01-01T00:00:00Z", "schema_version": 1,
             "course_id": "c1", "lesson_id": "l1", "watch_seconds": 300, "progress": 0.4}
GOOD_PURCHASE = {"event_id": "e2", "user_id": "u1", "ts": 1_767_225_600_000, "schema_version": 1,
                 "amount": 99.0, "currency": "CNY", "order_id": "o1", "course_id": "c1"}


def _bad(base: dict, **changes) -> bytes:
    data = {**base, **changes}
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


@pytest.mark.parametrize(
    ("topic", "key", "value", "kind", "needle"),
    [
        ("views", b"u1", b"", "decode", "empty value"),
        ("views", b"u1", b"{not json", "decode", "not JSON"),
        ("views", b"u1", b"[1, 2]", "validation", "expected a JSON object"),
        ("views", b"u1", _bad(GOOD_VIEW, progress=1.2), "validation", "progress: expected <= 1"),
        ("views", b"u1", _bad(GOOD_VIEW, progress="half"), "validation", "progress: expected number"),
        ("views", b"u1", _bad(GOOD_VIEW, watch_seconds=-3), "validation", "watch_seconds: expected >= 0"),
        ("views", b"u1", _bad(GOOD_VIEW, course_id=...), "validation", "course_id: required field is missing"),
        ("views", b"u1", _bad(GOOD_VIEW, event_id=""), "validation", "event_id"),
        ("views", b"u1", _bad(GOOD_VIEW, ts="2026-01-01T00:00:00"), "validation", "UTC offset"),
        ("views", b"u1", _bad(GOOD_VIEW, ts="2099-01-01T00:00:00Z"), "validation", "in the future"),
        ("views", b"u2", _bad(GOOD_VIEW), "key_mismatch", "!= user_id"),
        ("views", b"", _bad(GOOD_VIEW), "key_mismatch", "user_id"),
        ("views", b"u1", _bad(GOOD_VIEW, pad="x" * 70_000), "too_large", "limit"),
        ("purchases", b"u1", _bad(GOOD_PURCHASE, amount=-1), "validation", "amount: expected >= 0"),
        ("purchases", b"u1", _bad(GOOD_PURCHASE, currency="yuan"), "validation", "currency"),
        ("purchases", b"u1", _bad(GOOD_PURCHASE, plan="monthly"), "validation", "exactly one of course_id or plan"),
        ("purchases", b"u1", _bad(GOOD_PURCHASE, course_id=...), "validation", "exactly one of course_id or plan"),
        ("shares", b"u1", b'{"event_id": "e", "user_id": "u1"}', "validation", "ts: required field is missing"),
    ],
)
def test_each_kind_of_bad_event_is_rejected_with_a_clear_reason(topic, key, value, kind, needle):
    with pytest.raises(RejectedRecord) as info:
        decode_event(topic, key, value, now_ms=1_800_000_000_000)
    assert info.value.kind == kind
    assert needle in str(info.value)


def test_good_events_pass_and_unknown_fields_are_ignored():
    view = decode_event("views", b"u1", _bad(GOOD_VIEW, new_field_from_v2=1), now_ms=1_800_000_000_000)
    assert view.progress == 0.4 and view.rec_id is None
    purchase = decode_event("purchases", b"u1", _bad(GOOD_PURCHASE), now_ms=1_800_000_000_000)
    assert purchase.amount == 99.0 and purchase.plan is None


def test_records_are_frozen_and_to_dict_is_plain_json():
    view = parse(View, orjson.loads(_bad(GOOD_VIEW)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.progress = 1.0  # type: ignore[misc]
    assert orjson.loads(orjson.dumps(to_dict(view)))["ts"] == view.ts


def _generic_parse(cls: type, data: object) -> object:
    """The field-by-field loop of ``parse`` (the path nested records still take), no prefix."""
    from schemas.base import _MISSING, _plan

    if type(data) is not dict:
        msg = f"record: expected a JSON object, got {type(data).__name__}"
        raise ValidationError(msg)
    kwargs = {}
    for name, check, optional, default in _plan(cls):
        value = data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if not optional:
                msg = f"{name}: required field is missing"
                raise ValidationError(msg)
            kwargs[name] = default
            continue
        kwargs[name] = check(value)
    return cls(**kwargs)


_ODD = [None, True, False, 0, -1, 1, 2, 1001, 10**14 - 1, 10**14, -0.0, 0.5, 1.0, 1.0000001, 86_400.0,
        86_400.5, 1_000_001, float("nan"), float("inf"), float("-inf"), "", " ", "a b", "x" * 128, "x" * 129,
        "ABC", "abc", "link", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05", [], ["a"], ["a"] * 51, {}]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([View, Purchase, Share]), st.data())
def test_the_compiled_parser_accepts_and_rejects_exactly_as_the_field_loop(cls, data):
    from schemas.events import Course

    base = {"event_id": "e1", "user_id": "u1", "ts": NOW, "schema_version": 1, "course_id": "c1",
            "lesson_id": "l1", "watch_seconds": 60.0, "progress": 0.5, "amount": 9.0, "currency": "CNY",
            "order_id": "o1", "channel": "link", "share_id": "s1", "title": "t", "category": "k",
            "price": 1.0, "published_at": NOW, "tags": ["a"]}
    cls = data.draw(st.sampled_from([cls, Course]))
    record = dict(base)
    for key in data.draw(st.lists(st.sampled_from(sorted(base)), max_size=3)):
        if data.draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = data.draw(st.sampled_from(_ODD))

    def outcome(fn):
        try:
            return repr(fn(cls, record))
        except ValidationError as exc:
            return f"error: {exc}"

    assert outcome(parse) == outcome(_generic_parse)
