"""Typed, validated, versioned records: the machinery every topic schema is built from.

A schema is a frozen dataclass whose fields carry their constraints in ``field(metadata=...)``.
:func:`parse` turns a decoded JSON object into an instance or raises :class:`ValidationError`
with a reason that names the field, what was expected and what came. The same field
definitions generate the JSON Schema documents handed to producer teams (``jsonschema.py``),
so the contract and the check cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast

from schemas.exceptions import ValidationError

__all__ = [
    "SCHEMA_VERSION",
    "Record",
    "constraint",
    "format_ts",
    "parse",
    "parse_ts",
    "to_dict",
]

#: Version written by this code. Readers accept any version up to this one; schemas only grow by
#: optional fields, so an older producer's record is always valid here.
SCHEMA_VERSION = 1

_MISSING = dataclasses.MISSING
_INFINITIES = (float("inf"), float("-inf"))
T = TypeVar("T", bound="Record")


def constraint(
    *,
    description: str,
    default: Any = _MISSING,
    ge: float | None = None,
    le: float | None = None,
    min_len: int | None = None,
    max_len: int | None = None,
    pattern: str | None = None,
    enum: tuple[str, ...] | None = None,
    timestamp: bool = False,
) -> Any:
    """A dataclass field with its contract: description, ranges, lengths, pattern, enum."""
    meta = {
        "description": description,
        "ge": ge,
        "le": le,
        "min_len": min_len,
        "max_len": max_len,
        "pattern": pattern,
        "enum": enum,
        "timestamp": timestamp,
    }
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict):
        factory = type(default)
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Record:
    """Base of every topic record. Subclasses are ``@dataclass(frozen=True, slots=True)``."""

    topic: ClassVar[str]
    #: the record type name used in JSON Lines event files (``"type": "view"``)
    kind: ClassVar[str]


# ---------------------------------------------------------------------------------------------
# timestamps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def parse_ts(value: Any, field: str = "ts") -> int:
    """Event time as integer epoch milliseconds, from ISO-8601 with offset or epoch millis.

    >>> parse_ts("2024-01-02T03:04:05+00:00")
    1704164645000
    >>> parse_ts(1704164645000)
    1704164645000
    """
    if isinstance(value, bool):
        msg = f"{field}: expected ISO-8601 string with offset or epoch milliseconds, got bool"
        raise ValidationError(msg)
    if isinstance(value, int):
        if not 0 <= value < 10**14:
            msg = f"{field}: epoch milliseconds out of range: {value}"
            raise ValidationError(msg)
        return value
    if isinstance(value, str):
        if not _ISO_RE.match(value):
            msg = f"{field}: expected ISO-8601 date-time, got {value[:40]!r}"
            raise ValidationError(msg)
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            msg = f"{field}: not a valid ISO-8601 date-time: {value[:40]!r}"
            raise ValidationError(msg) from None
        if dt.tzinfo is None:
            msg = f"{field}: ISO-8601 date-time needs a UTC offset (e.g. 'Z' or '+08:00'): {value[:40]!r}"
            raise ValidationError(msg)
        return (dt - _EPOCH) // _MS  # exact integer arithmetic: no float rounding of millis
    msg = f"{field}: expected ISO-8601 string or epoch milliseconds, got {type(value).__name__}"
    raise ValidationError(msg)


def format_ts(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with millisecond precision and a ``Z``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# ---------------------------------------------------------------------------------------------
# validation plans, built once per record class


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _make_checker(name: str, tp: Any, meta: dict[str, Any]) -> Callable[[Any], Any]:
    """Return a function that checks and normalises one field's value (or raises)."""
    if meta.get("timestamp"):
        return lambda v: parse_ts(v, name)
    origin = typing.get_origin(tp)
    ge, le = meta.get("ge"), meta.get("le")
    min_len, max_len = meta.get("min_len"), meta.get("max_len")
    pattern = re.compile(meta["pattern"]) if meta.get("pattern") else None
    enum = meta.get("enum")
    has_len = min_len is not None or max_len is not None

    def check_range(v: float) -> None:
        if v != v or v in _INFINITIES:
            msg = f"{name}: expected a finite number, got {v!r}"
            raise ValidationError(msg)
        if ge is not None and v < ge:
            msg = f"{name}: expected >= {ge}, got {v!r}"
            raise ValidationError(msg)
        if le is not None and v > le:
            msg = f"{name}: expected <= {le}, got {v!r}"
            raise ValidationError(msg)

    def check_len(v: Any) -> None:
        if min_len is not None and len(v) < min_len:
            msg = f"{name}: expected at least {min_len} characters/items, got {len(v)}"
            raise ValidationError(msg)
        if max_len is not None and len(v) > max_len:
            msg = f"{name}: expected at most {max_len} characters/items, got {len(v)}"
            raise ValidationError(msg)

    if tp is str:

        def check_str(v: Any) -> str:
            if type(v) is not str:
                msg = f"{name}: expected string, got {type(v).__name__}"
                raise ValidationError(msg)
            if has_len:
                check_len(v)
            if pattern is not None and not pattern.fullmatch(v):
                msg = f"{name}: {v[:40]!r} does not match {pattern.pattern}"
                raise ValidationError(msg)
            if enum is not None and v not in enum:
                msg = f"{name}: expected one of {', '.join(enum)}, got {v[:40]!r}"
                raise ValidationError(msg)
            return v

        return check_str
    if tp is int:

        def check_int(v: Any) -> int:
            if type(v) is not int:
                msg = f"{name}: expected integer, got {type(v).__name__}"
                raise ValidationError(msg)
            # an int is always finite: only the bounds can fail (check_range's messages)
            if (ge is not None and v < ge) or (le is not None and v > le):
                check_range(v)
            return v

        return check_int
    if tp is float:

        def check_float(v: Any) -> float:
            if type(v) not in (int, float):
                msg = f"{name}: expected number, got {type(v).__name__}"
                raise ValidationError(msg)
            check_range(v)
            return float(v)

        return check_float
    if tp is bool:

        def check_bool(v: Any) -> bool:
            if type(v) is not bool:
                msg = f"{name}: expected boolean, got {type(v).__name__}"
                raise ValidationError(msg)
            return v

        return check_bool
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item_check = _make_checker(f"{name}[]", item_tp, {})

        def check_list(v: Any) -> list[Any]:
            if type(v) is not list:
                msg = f"{name}: expected array, got {type(v).__name__}"
                raise ValidationError(msg)
            check_len(v)
            return [item_check(x) for x in v]

        return check_list
    if origin is dict or tp is dict:

        def check_dict(v: Any) -> dict[str, Any]:
            if type(v) is not dict:
                msg = f"{name}: expected object, got {type(v).__name__}"
                raise ValidationError(msg)
            return v

        return check_dict
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        record_type: type[Any] = tp
        return lambda v: parse(record_type, v, prefix=f"{name}.")
    msg = f"unsupported field type {tp!r} for {name}"
    raise TypeError(msg)


_Plan = list[tuple[str, Callable[[Any], Any], bool, Any]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = []
        for f in dataclasses.fields(cls):
            tp, optional = _unwrap_optional(hints[f.name])
            has_default = f.default is not _MISSING or f.default_factory is not _MISSING
            default = (
                f.default
                if f.default is not _MISSING
                else (f.default_factory() if f.default_factory is not _MISSING else None)
            )
            plan.append((f.name, _make_checker(f.name, tp, dict(f.metadata)), optional or has_default, default))
        _PLANS[cls] = plan
    return plan


def parse(cls: type[T], data: Any, prefix: str = "") -> T:
    """Validate a decoded JSON object against ``cls`` and return the typed record.

    Unknown fields are ignored (a newer producer may send fields this version does not know);
    missing required fields, wrong types and out-of-range values raise ValidationError.
    """
    if not prefix:
        fast = _FAST.get(cls)
        if fast is None:
            fast = _FAST[cls] = _compile_parser(cls)
        return cast(T, fast(data))
    if type(data) is not dict:
        msg = f"{prefix or 'record'}: expected a JSON object, got {type(data).__name__}"
        raise ValidationError(msg)
    kwargs: dict[str, Any] = {}
    for name, check, optional, default in _plan(cls):
        value = data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if not optional:
                msg = f"{prefix}{name}: required field is missing"
                raise ValidationError(msg)
            kwargs[name] = default
            continue
        try:
            kwargs[name] = check(value)
        except ValidationError as exc:
            if prefix:
                msg = f"{prefix}{exc}"
                raise ValidationError(msg) from None
            raise
    return cls(**kwargs)


_FAST: dict[type, Callable[[Any], Any]] = {}


def _fast_test(i: int, tp: Any, meta: dict[str, Any], env: dict[str, Any]) -> str | None:
    """A Python expression over ``v`` that is true only when field ``i``'s checker would accept
    ``v`` and return it unchanged (None: no such shortcut); anything else goes to the checker,
    which raises exactly as before."""
    if meta.get("timestamp"):
        return "type(v) is int and 0 <= v < 100000000000000"  # parse_ts's epoch-millis range
    ge, le = meta.get("ge"), meta.get("le")
    bounds = ([f"v >= {ge!r}"] if ge is not None else []) + ([f"v <= {le!r}"] if le is not None else [])
    if tp is str:
        conds = ["type(v) is str"]
        if meta.get("min_len") is not None:
            conds.append(f"len(v) >= {meta['min_len']!r}")
        if meta.get("max_len") is not None:
            conds.append(f"len(v) <= {meta['max_len']!r}")
        if meta.get("pattern"):
            env[f"match{i}"] = re.compile(meta["pattern"]).fullmatch
            conds.append(f"match{i}(v) is not None")
        if meta.get("enum") is not None:
            env[f"enum{i}"] = meta["enum"]
            conds.append(f"v in enum{i}")
        return " and ".join(conds)
    if tp is int:  # an int is always finite
        return " and ".join(["type(v) is int", *bounds])
    if tp is float:  # float(v) is v for a float; NaN fails every bound, +-inf one of two
        finite = [] if ge is not None and le is not None else ["v - v == 0.0"]
        return " and ".join(["type(v) is float", *finite, *bounds])
    return None


def _compile_parser(cls: type) -> Callable[[Any], Any]:
    """:func:`parse` of ``cls`` without a prefix, as straight-line code over the class's plan.

    The same checks in the same order with the same messages; only the generic loop (and its
    ``try``, which re-raises unchanged without a prefix) is gone, and a value that plainly
    passes its field's checks (right type, in range, matching) is taken without a call.
    """
    plan = _plan(cls)
    hints = typing.get_type_hints(cls)
    meta = {f.name: (_unwrap_optional(hints[f.name])[0], dict(f.metadata)) for f in dataclasses.fields(cls)}
    env: dict[str, Any] = {"_MISSING": _MISSING, "ValidationError": ValidationError, "cls": cls}
    lines = [
        "def parse_record(data):",
        "    if type(data) is not dict:",
        "        raise ValidationError(f\"record: expected a JSON object, got {type(data).__name__}\")",
        "    get = data.get",
    ]
    args = []
    for i, (name, check, optional, default) in enumerate(plan):
        env[f"check{i}"] = check
        env[f"default{i}"] = default
        lines.append(f"    v = get({name!r}, _MISSING)")
        lines.append("    if v is _MISSING or v is None:")
        if optional:
            lines.append(f"        a{i} = default{i}")
        else:
            lines.append(f"        raise ValidationError({name + ': required field is missing'!r})")
        test = _fast_test(i, *meta[name], env)
        if test is None:
            lines.append("    else:")
            lines.append(f"        a{i} = check{i}(v)")
        else:
            lines.append(f"    elif {test}:")
            lines.append(f"        a{i} = v")
            lines.append("    else:")
            lines.append(f"        a{i} = check{i}(v)")
        args.append(f"{name}=a{i}")
    lines.append(f"    return cls({', '.join(args)})")
    exec("\n".join(lines), env)  # noqa: S102 - code built above from the class's own field names
    return cast(Callable[[Any], Any], env["parse_record"])


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict (nested records too); timestamps stay epoch millis."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [to_dict(v) for v in value]
        out[f.name] = value
    return out
