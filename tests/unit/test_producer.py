"""Injected producer faults: every fault meant for the DLQ is refused by ingestion, for its reason."""

from __future__ import annotations

import random

import pytest

from schemas import Purchase, RejectedRecord, Share, View, decode_event
from streams.producer import BAD_KINDS, corrupt, to_wire

NOW = 1_767_225_600_000
RECORDS = [
    View(event_id="e1", user_id="u1", ts=NOW - 1000, schema_version=1, course_id="c1", lesson_id="l1",
         watch_seconds=60.0, progress=0.3),
    Purchase(event_id="e2", user_id="u1", ts=NOW - 1000, schema_version=1, amount=99.0, currency="CNY",
             order_id="o1", course_id="c1"),
    Share(event_id="e3", user_id="u1", ts=NOW - 1000, schema_version=1, course_id="c1", channel="link",
          share_id="s1"),
]
EXPECTED_KIND = {"not_json": "decode", "missing_field": "validation", "wrong_type": "validation",
                 "out_of_range": "validation", "empty_key": "key_mismatch", "too_large": "too_large",
                 "future_ts": "validation"}


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.topic)
@pytest.mark.parametrize("fault", [k for k, dlq in BAD_KINDS.items() if dlq])
def test_every_injected_fault_is_rejected(record, fault):
    topic, key, value = to_wire(record)
    assert decode_event(topic, key, value, now_ms=NOW) == record
    bad_key, bad_value = corrupt(topic, key, value, fault, random.Random(1))
    with pytest.raises(RejectedRecord) as info:
        decode_event(topic, bad_key, bad_value)
    assert info.value.kind == EXPECTED_KIND[fault]
