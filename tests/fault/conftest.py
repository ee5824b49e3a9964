"""Fixtures of the fault suite: the event file, the fault-free baseline per store, the results
table.

``pytest tests/fault -m fault`` runs the whole matrix; ``--fault-table PATH`` (or the
``COURSEPULSE_FAULT_TABLE`` variable) also writes the scenario x store table of users
differing from the fault-free run as Markdown (printed at the end of the session either way).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from schemas.eventfile import read_events
from tests.fault.harness import expected_counts
from tests.fault.scenarios import Run, run_scenario
from tools.simulator import PlatformSimulator, SimConfig, write_jsonl

#: the event file: ~300 users, 21 days, ~3,100 user events and 120 courses (seed 11)
SIM = SimConfig(users=300, days=21.0, seed=11, start_ms=1_735_689_600_000)  # 2025-01-01

RESULTS: dict[tuple[str, str], dict[str, Any]] = {}

#: what ``COURSEPULSE_FAULT_MATRIX`` selects: ``full`` (every scenario x store, ~12 min on
#: today's code; `make test-fault`), ``quick`` (the default, so in `make test`: the claims that
#: fail most often, ~3-4 min), ``off``
QUICK = {
    ("fault_free", "memory://"), ("fault_free", "rocksdb://"),
    ("kill9_late", "memory://"), ("kill9_late", "rocksdb://"),
    ("two_workers_one_killed", "memory://"),
    ("bad_records", "rocksdb://"),
    ("misrouted", "memory://"),
    ("broker_loss", "rocksdb://"),  # the send gate's end-to-end claim (seventh session)
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    matrix = os.environ.get("COURSEPULSE_FAULT_MATRIX", "quick").strip().lower()
    if matrix == "full":
        return
    if matrix not in ("quick", "off"):
        msg = f"COURSEPULSE_FAULT_MATRIX must be full, quick or off, got {matrix!r}"
        raise pytest.UsageError(msg)
    skip = pytest.mark.skip(reason=f"fault matrix {matrix!r} (COURSEPULSE_FAULT_MATRIX=full runs it)")
    for item in items:
        spec = getattr(item, "callspec", None)
        if item.get_closest_marker("fault") is None or spec is None:
            continue
        key = (spec.params.get("scenario"), spec.params.get("store"))
        if matrix == "off" or key not in QUICK:
            item.add_marker(skip)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fault-table", default=os.environ.get("COURSEPULSE_FAULT_TABLE"),
                     help="write the fault suite's scenario x store table (Markdown) here")


@pytest.fixture(scope="session")
def fault_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The simulator's event file (generated once, deterministic) and the counts it implies."""
    path = tmp_path_factory.mktemp("fault-events") / "events.jsonl"
    write_jsonl(PlatformSimulator(SIM).events(), path)
    records = list(read_events(path))
    return records, expected_counts(records)


_BASELINES: dict[str, Run] = {}


@pytest.fixture
def baseline(fault_events, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """The fault-free run of a store (run once per session and store, on first use)."""

    def get(store: str) -> Run:
        if store not in _BASELINES:
            workdir = tmp_path_factory.mktemp(f"baseline-{store.split(':')[0]}")
            _BASELINES[store] = run_scenario("fault_free", store, workdir, fault_events[0])
        return _BASELINES[store]

    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not RESULTS:
        return
    table = results_table(RESULTS)
    terminalreporter.write_sep("=", "fault suite: users differing from the fault-free run")
    terminalreporter.write_line(table)
    path = config.getoption("--fault-table")
    if path:
        Path(path).write_text(table + "\n")


def results_table(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Markdown: scenario x store -> users differing (per aspect) and the wall time."""
    stores = sorted({s for _, s in results})
    scenarios = list(dict.fromkeys(n for n, _ in results))
    lines = ["| scenario | " + " | ".join(stores) + " |", "|---" * (len(stores) + 1) + "|"]
    for name in scenarios:
        cells = []
        for store in stores:
            r = results.get((name, store))
            if r is None:
                cells.append("-")
                continue
            parts = [f"**{r['differing']}**"]
            if r["aspects"]:
                parts.append("(" + ", ".join(f"{a} {n}" for a, n in r["aspects"].items()) + ")")
            parts.extend(r.get("flags", []))
            parts.append(f"{r['wall_s']:.0f} s")
            cells.append(" ".join(parts))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
