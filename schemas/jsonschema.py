"""JSON Schema (draft 2020-12) documents of every topic, generated from the record classes."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import orjson

from schemas.base import SCHEMA_VERSION, _unwrap_optional
from schemas.topics import TOPICS

__all__ = ["ALL_TOPICS", "json_schema", "write_schemas"]

#: topic -> record class of every topic with a published schema, from the registry (schemas.topics)
ALL_TOPICS: dict[str, type[Any]] = {t.name: t.record for t in TOPICS if not t.internal and t.record is not None}


def _type_schema(tp: Any, meta: dict[str, Any]) -> dict[str, Any]:
    if meta.get("timestamp"):
        return {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
            ]
        }
    origin = typing.get_origin(tp)
    out: dict[str, Any]
    if tp is str:
        out = {"type": "string"}
        if meta.get("pattern"):
            out["pattern"] = f"^{meta['pattern']}$"
        if meta.get("enum"):
            out["enum"] = list(meta["enum"])
        if meta.get("min_len") is not None:
            out["minLength"] = meta["min_len"]
        if meta.get("max_len") is not None:
            out["maxLength"] = meta["max_len"]
    elif tp is int or tp is float:
        out = {"type": "integer" if tp is int else "number"}
        if meta.get("ge") is not None:
            out["minimum"] = meta["ge"]
        if meta.get("le") is not None:
            out["maximum"] = meta["le"]
    elif tp is bool:
        out = {"type": "boolean"}
    elif origin is list:
        (item,) = typing.get_args(tp)
        out = {"type": "array", "items": _type_schema(item, {})}
        if meta.get("max_len") is not None:
            out["maxItems"] = meta["max_len"]
    elif origin is dict or tp is dict:
        out = {"type": "object"}
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        out = _object_schema(tp)
    else:  # pragma: no cover - guarded by base._make_checker
        msg = f"no JSON Schema mapping for {tp!r}"
        raise TypeError(msg)
    return out


def _object_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        meta = dict(f.metadata)
        prop = _type_schema(tp, meta)
        prop["description"] = meta.get("description", "")
        if optional:
            prop = {"anyOf": [prop, {"type": "null"}], "description": prop["description"]}
        props[f.name] = prop
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if not (optional or has_default):
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": True}


def json_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema document of one topic's message values."""
    cls = ALL_TOPICS[topic]
    doc = _object_schema(cls)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"coursepulse/{topic}/v{SCHEMA_VERSION}.json",
        "title": f"{topic} (CoursePulse schema v{SCHEMA_VERSION})",
        "description": (cls.__doc__ or "").strip(),
        **doc,
    }


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic in ALL_TOPICS:
        path = out_dir / f"{topic}.schema.json"
        path.write_bytes(orjson.dumps(json_schema(topic), option=orjson.OPT_INDENT_2))
        paths.append(path)
    return paths
