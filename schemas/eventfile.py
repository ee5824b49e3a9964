"""Event files: JSON Lines, one event per line, ``{"type": "view"|"purchase"|"share"|"course", ...}``.

The exchange format for replay and evaluation; ground truth for churn is a CSV
``user_id,churned_at`` (ISO-8601, empty when the user never churned).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from schemas.base import parse, parse_ts, to_dict
from schemas.codec import KIND_TYPES
from schemas.exceptions import DecodeError, ValidationError

__all__ = ["read_events", "read_labels", "write_events"]


def read_events(path: Path | str) -> Iterator[Any]:
    """Every record of an event file, validated (blank lines skipped); a bad line raises with
    ``path:line`` in the message."""
    path = Path(path)
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                msg = f"{path}:{lineno}: not JSON: {exc}"
                raise DecodeError(msg) from None
            if type(data) is not dict:
                msg = f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}"
                raise DecodeError(msg)
            kind = data.pop("type", None)
            cls = KIND_TYPES.get(kind) if isinstance(kind, str) else None
            if cls is None:
                msg = f"{path}:{lineno}: type: expected one of {', '.join(KIND_TYPES)}, got {kind!r}"
                raise ValidationError(msg)
            try:
                yield parse(cls, data)
            except ValidationError as exc:
                msg = f"{path}:{lineno}: {exc}"
                raise ValidationError(msg) from None


def write_events(records: Iterable[Any], path: Path | str) -> int:
    """Write records as an event file (``{"type": kind, **fields}``, epoch-ms times); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    dumps = orjson.dumps
    with path.open("wb", buffering=1 << 20) as fh:
        write = fh.write
        for record in records:
            write(dumps({"type": record.kind, **to_dict(record)}))
            write(b"\n")
            n += 1
    return n


def read_labels(path: Path) -> dict[str, int | None]:
    """``user_id -> churned_at`` (epoch millis) or None when the user never churned."""
    out: dict[str, int | None] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"user_id", "churned_at"} <= set(reader.fieldnames):
            msg = f"{path}: expected a header 'user_id,churned_at', got {reader.fieldnames}"
            raise ValidationError(msg)
        for n, row in enumerate(reader, 2):
            text = (row["churned_at"] or "").strip()
            try:
                out[row["user_id"]] = parse_ts(text, f"{path}:{n}: churned_at") if text else None
            except ValidationError:
                raise
    return out
