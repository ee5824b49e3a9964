"""README documents every setting and every command the CLI has."""

from __future__ import annotations

from pathlib import Path

from streams.cli import build_parser
from streams.settings import ENV

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_env_var_is_documented():
    missing = [name for name in ENV if f"`{name}`" not in README]
    assert not missing, f"README lacks {missing}"


def test_every_command_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"coursepulse {name}" not in README]
    assert not missing, f"README lacks {missing}"


def test_the_two_setup_commands_are_there_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci
