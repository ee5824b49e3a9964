"""The broker-free parts of ``coursepulse bench``: kernels (f), memory (h), profile summary, report.

Structure and positivity only: timings depend on the machine, so no thresholds are asserted.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from streams.cli import build_parser
from tools.bench import (
    CATALOGUE_SIZES,
    EVENT_LOOP_C,
    PAIR_SIZES,
    ROW_SIZES,
    BenchConfig,
    bench_kernels,
    bench_memory,
    machine_info,
    summarise_profile,
    table_rows,
)


def _positive(x: object) -> bool:
    return isinstance(x, float | int) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def kernels() -> dict:
    return bench_kernels(quick=True, min_time=0.002, repeat=2)


def test_kernels_cover_each_kernel_at_the_pipeline_sizes(kernels: dict) -> None:
    sizes = {"row_similarities": ("n", ROW_SIZES), "score_candidates": ("n_items", CATALOGUE_SIZES),
             "pair_increments": ("n", PAIR_SIZES)}
    for name, (key, expected) in sizes.items():
        part = kernels[name]
        assert [row[key] for row in part["sizes"]] == list(expected)
        for row in part["sizes"]:
            for figure in ("kernel_us", "core_us", "numpy_us", "speedup", "core_speedup"):
                assert _positive(row[figure]), (name, row)
            assert row["speedup"] == pytest.approx(row["numpy_us"] / row["kernel_us"])
        assert part["min_speedup"] == min(row["speedup"] for row in part["sizes"])


def test_batch_kernels_are_timed_on_measured_pipeline_batches(kernels: dict) -> None:
    for name, keys in (("row_similarities_batch", ("rows", "entries")), ("cooc_gains_batch", ("rises", "pairs")),
                       ("pair_increments_batch", ("rises", "pairs"))):
        part = kernels[name]
        assert part["size_source"] and part["sizes"]
        for row in part["sizes"]:
            assert row["source"] and all(isinstance(row[key], int) and row[key] >= 0 for key in keys), row
            for figure in ("kernel_us", "core_us", "numpy_us", "speedup", "core_speedup"):
                assert _positive(row[figure]), (name, row)
            assert row["speedup"] == pytest.approx(row["numpy_us"] / row["kernel_us"])
        assert part["min_speedup"] == min(row["speedup"] for row in part["sizes"])
    assert set(kernels["row_similarities_batch"]["ticks"]) == {"400", "1600"}
    assert [row["events"] for row in kernels["cooc_gains_batch"]["sizes"]] == [500, 8]


def test_min_speedup_is_over_the_kernels_the_pipeline_calls(kernels: dict) -> None:
    pipeline = kernels["pipeline_kernels"]
    assert set(pipeline) == {"row_similarities_batch", "cooc_gains_batch", "rank_users"}
    assert "score_candidates" in kernels["not_in_min"] and "rank_candidates" in kernels["not_in_min"]
    assert "pair_increments_batch" in kernels["not_in_min"]
    assert not set(pipeline) & set(kernels["not_in_min"])
    assert kernels["min_speedup"] == min(kernels[name]["min_speedup"] for name in pipeline)
    assert kernels["min_speedup_at"].split()[0] in pipeline


def test_kernels_are_also_timed_against_pure_python(kernels: dict) -> None:
    assert set(kernels["pure_python"]) == {"row_similarities", "score_candidates", "pair_increments"}
    for row in kernels["pure_python"].values():
        for figure in ("python_us", "kernel_us", "numpy_us", "kernel_speedup_vs_python", "numpy_speedup_vs_python"):
            assert _positive(row[figure]), row


def test_memory_per_100k_users_is_measured_and_scaled(tmp_path: Path) -> None:
    # in a fresh interpreter, as the bench measures it: in a process that already freed memory
    # (a test runner's), new objects reuse freed pages and the RSS delta can read 0
    from tools.bench.memory import _memory_in_subprocess

    m = _memory_in_subprocess(3000, 3, tmp_path)
    assert m["users"] == 3000 and m["events"] == 9000
    for figure in ("rss_delta_mb", "bytes_per_user", "mb_per_100k_users", "rss_after_mb"):
        assert _positive(m[figure]), m
    assert m["mb_per_100k_users"] == pytest.approx(m["rss_delta_mb"] * 100_000 / 3000)
    assert m["rss_delta_mb"] == pytest.approx(m["user_table_mb"] + m["retention_mb"])


def test_memory_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="users"):
        bench_memory(users=0)


def test_profile_summary_counts_inclusive_and_self_time(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    entry = "_run_module_as_main (<frozen runpy>:198);main (streams/cli.py:10);Worker.execute_from_commandline (mode/worker.py:264)"
    raw.write_text(
        f"{entry};ingest (agents/ingest.py:90);decode_event (schemas/codec.py:60) 30\n"
        f"{entry};ingest (agents/ingest.py:95);observe (models/churn.py:400) 40\n"
        f"{entry};_run (faust/streams.py:700);ingest (agents/ingest.py:96) 20\n"
        f"{entry} 10\n"
    )
    s = summarise_profile(raw, events=100.0)
    assert s["samples"] == 100
    inclusive = {row["function"]: row["pct"] for row in s["inclusive"]}
    assert inclusive["main"] == pytest.approx(100.0)
    assert inclusive["ingest"] == pytest.approx(90.0)  # counted once per stack, whatever the line
    assert inclusive["observe"] == pytest.approx(40.0)
    work = {row["function"]: row["pct"] for row in s["inclusive_below_entry_frames"]}
    assert "main" not in work and "Worker.execute_from_commandline" not in work
    assert work["ingest"] == pytest.approx(90.0) and work["_run"] == pytest.approx(20.0)
    own = {row["function"]: row["pct"] for row in s["self"]}
    assert own == pytest.approx({"observe": 40.0, "decode_event": 30.0, "ingest": 20.0,
                                 "Worker.execute_from_commandline": 10.0})
    packages = {row["package"]: row["pct"] for row in s["self_by_package"]}
    assert packages == pytest.approx({"project:models": 40.0, "project:schemas": 30.0, "project:agents": 20.0,
                                      EVENT_LOOP_C: 10.0})
    assert sum(part["pct"] for part in s["split"].values()) == pytest.approx(100.0)
    # 100 samples at 100 Hz over 100 events: 10 ms per event
    assert s["sampled_us_per_event"] == pytest.approx(10_000.0)


def test_report_rows_and_machine(kernels: dict) -> None:
    m = machine_info()
    assert m["cpu_count"] >= 1 and m["python"] and m["model_name"]
    result = {"events": 100, "kernels": kernels, "kernel_speedup_vs_numpy_min": kernels["min_speedup"],
              "kernel_speedup_vs_numpy_min_at": kernels["min_speedup_at"], "errors": []}
    rows = table_rows(result)
    assert all(len(row) == 3 and all(isinstance(c, str) for c in row) for row in rows)
    assert any(row[1].startswith("(f) score_candidates") for row in rows)


def test_cli_and_config() -> None:
    args = build_parser().parse_args(["bench", "--json", "out.json", "--quick"])
    assert args.command == "bench" and args.quick and args.json_out == Path("out.json")
    quick = BenchConfig.create(quick=True)
    assert quick.events == 3000 and not quick.profile and quick.oulad is None
    assert BenchConfig.create(events=5000).events == 5000
    with pytest.raises(ValueError, match="events"):
        BenchConfig.create(events=10)


def test_a_failed_part_is_recorded_and_the_others_go_on():
    import asyncio

    from tools.bench.run import _aphase, _phase

    result: dict = {"errors": []}

    def broken() -> int:
        msg = "broker gone"
        raise RuntimeError(msg)

    async def fine() -> int:
        return 7

    assert _phase(result, "(x) broken", broken) is None
    assert asyncio.run(_aphase(result, "(y) fine", fine())) == 7
    assert [e["part"] for e in result["errors"]] == ["(x) broken"]
    assert "RuntimeError: broker gone" in result["errors"][0]["error"]
    assert "broken" in result["errors"][0]["traceback"]


def test_a_scale_point_pads_the_stored_users_without_changing_what_the_window_computes() -> None:
    from tools.bench.scale import replay_point

    bare, small = replay_point(1, "short", 300, 7, platform_users=150)
    padded, big = replay_point(3000, "short", 300, 7, platform_users=150)
    assert small["users_simulated"] < small["users"] < 3000  # no padding: the simulated and the newly arrived
    assert big["users"] == 3000 and big["users_simulated"] == small["users_simulated"]
    assert big["measured_events"] == small["measured_events"] == 300
    assert big["cpu_us_per_event"] > 0 and big["events_per_s"] > 0
    # the padded users are stored and inert: every list and every simulated user's state is
    # what the unpadded replay computed
    assert padded.last_lists.keys() == bare.last_lists.keys() and padded.last_lists == bare.last_lists
    assert {u: s.to_dict() for u, s in bare.states.items()} == {u: padded.states[u].to_dict() for u in bare.states}
    assert all(padded.states[u].partition >= 0 for u in padded.states if u.startswith("stored-"))


def test_a_scale_point_rejects_nonsense() -> None:
    from tools.bench.scale import bench_scale_point

    with pytest.raises(ValueError, match="history"):
        bench_scale_point(10, "medium")
    with pytest.raises(ValueError, match="measured"):
        bench_scale_point(10, "short", measured=10**9, platform_users=20)
