"""Dead letters: what a redrive re-sends, and the --since forms (no broker needed)."""

from __future__ import annotations

import base64

import orjson
import pytest

from schemas.base import to_dict
from schemas.codec import dead_letter
from streams.cli import build_parser
from streams.dlq import DeadLetterRecord, parse_since, redrive_plan


def _letter(key: bytes | None, value: bytes, kind: str = "key_mismatch") -> DeadLetterRecord:
    record = dead_letter(topic="p-views", partition=2, offset=7, key=key, value=value, error="e", error_kind=kind, now_ms=5)
    return DeadLetterRecord(0, 3, orjson.loads(orjson.dumps(to_dict(record))))


def test_redrive_resends_the_original_bytes_and_key_to_the_source_topic():
    value = b'{"user_id": "u1", "event_id": "e1"}'
    d = _letter(b"wrong", value)
    assert d.kind == "key_mismatch" and d.failed_at == 5 and d.original == value and d.key == b"wrong"
    assert redrive_plan(d, fix_key=False) == ("p-views", b"wrong", value)
    assert redrive_plan(d, fix_key=True) == ("p-views", b"u1", value)  # re-keyed by the payload's user
    assert base64.b64decode(d.value["original_b64"]) == value


def test_fix_key_needs_a_json_payload_with_a_user_id():
    assert redrive_plan(_letter(b"k", b"\xffnot json"), fix_key=True) == "--fix-key: the original is not JSON"
    assert redrive_plan(_letter(b"k", b'{"a": 1}'), fix_key=True) == "--fix-key: the original has no user_id"
    assert redrive_plan(_letter(None, b"{}"), fix_key=False) == ("p-views", None, b"{}")


def test_since_accepts_durations_epoch_ms_and_iso_with_an_offset():
    now = 10 * 86_400_000
    assert parse_since("30m", now) == now - 1_800_000
    assert parse_since("2h", now) == now - 7_200_000
    assert parse_since("1.5d", now) == now - 129_600_000
    assert parse_since("1767225600000", now) == 1_767_225_600_000
    assert parse_since("2026-01-01T08:00:00+08:00", now) == 1_767_225_600_000
    for bad in ("yesterday", "2026-01-01T00:00:00"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad, now)


def test_dlq_command_line():
    args = build_parser().parse_args(["dlq", "redrive", "--kind", "key_mismatch", "--kind", "wrong_partition",
                                      "--fix-key", "--dry-run", "--since", "1h"])
    assert args.kind == ["key_mismatch", "wrong_partition"] and args.fix_key and args.dry_run
    assert build_parser().parse_args(["dlq", "list"]).kind is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dlq"])
