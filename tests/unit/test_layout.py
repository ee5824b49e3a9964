"""The shape of the tree: what may import what, module size, and imports that need nothing running.

- ``models/`` imports nothing from ``streams/`` or ``tools/`` (pure model code);
- ``streams/`` imports no agent, except the app's autodiscovery (``streams.app.load_agents``);
- ``streams/`` imports no tool (tools depend on the runtime, never the other way);
- no module of ``streams/`` is over 400 lines (wiring only: tools live in ``tools/``);
- every module of ``agents/``, ``streams/`` and ``schemas/`` imports with an empty environment.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a file, at any depth (lazy imports count too)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{line} imports {mod}"
            for p in _modules(package) for line, mod in _imports(p)
            if mod.split(".")[0] in forbidden]


def test_models_import_no_runtime_and_no_tool() -> None:
    assert _offending("models", ("streams", "tools", "agents", "faust", "aiokafka", "redis")) == []


def test_schemas_import_no_runtime_and_no_tool() -> None:
    assert _offending("schemas", ("streams", "tools", "agents", "models")) == []


def test_streams_import_no_agent_but_through_autodiscovery() -> None:
    found = _offending("streams", ("agents",))
    assert found == [f"streams/app.py:{_load_agents_import_line()} imports agents"]


def _load_agents_import_line() -> int:
    tree = ast.parse((ROOT / "streams/app.py").read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_agents"]
    (line,) = [n.lineno for n in ast.walk(fn) if isinstance(n, ast.Import) and n.names[0].name == "agents"]
    return line


def test_streams_import_no_tool() -> None:
    # the CLI dispatches to the tools, lazily, inside its subcommands: nothing else may
    found = [f for f in _offending("streams", ("tools",)) if not f.startswith("streams/cli.py:")]
    assert found == []


def test_the_cli_imports_tools_only_inside_its_subcommands() -> None:
    tree = ast.parse((ROOT / "streams/cli.py").read_text())
    top = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
           for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [m for m in top if m and m.split(".")[0] in ("tools", "agents", "models")] == []


def test_no_module_of_streams_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _modules("streams")}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


@pytest.mark.parametrize("package", ["agents", "streams", "schemas"])
def test_every_module_imports_without_a_broker_or_an_environment(package: str) -> None:
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in _modules(package)]
    names = [n.removesuffix(".__init__") for n in names]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    proc = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "")}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
