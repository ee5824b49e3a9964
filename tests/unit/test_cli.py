"""The command line: JSON Schema documents for producer teams, argument errors."""

from __future__ import annotations

import orjson
import pytest

from schemas.jsonschema import ALL_TOPICS
from streams.cli import build_parser, main


def test_schemas_command_writes_a_valid_document_per_topic(tmp_path, capsys):
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{t}.schema.json" for t in ALL_TOPICS)
    views = orjson.loads((tmp_path / "views.schema.json").read_bytes())
    assert views["$schema"].endswith("2020-12/schema")
    assert {"event_id", "user_id", "ts", "course_id", "progress"} <= set(views["required"])
    assert views["properties"]["progress"]["maximum"] == 1
    purchases = orjson.loads((tmp_path / "purchases.schema.json").read_bytes())
    assert "course_id" not in purchases["required"] and "plan" not in purchases["required"]


def test_unknown_command_and_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["frobnicate"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--duration", "soon"])
