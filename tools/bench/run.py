"""The whole run: every part in order, each failure recorded without losing the others' figures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Settings
from tools.bench.children import Children, _py_spy
from tools.bench.config import _ROOT, BenchConfig, machine_info
from tools.bench.evaluation import _simulate, bench_eval
from tools.bench.kernels import bench_kernels
from tools.bench.live import _Live
from tools.bench.memory import _memory_in_subprocess
from tools.bench.profile import summarise_profile
from tools.bench.report import _get, write_plot, write_scale_plot
from tools.bench.scale import bench_scale

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# the run


class _Phase:
    """One part of the run, timed and logged; a failure is recorded in ``result["errors"]`` and
    the part's figure is None, so one failed part does not lose the others' figures."""

    def __init__(self, result: dict[str, Any], name: str) -> None:
        self.result, self.name, self.value, self.t = result, name, None, 0.0

    def __enter__(self) -> _Phase:
        log.info("bench: %s ...", self.name)
        self.t = time.perf_counter()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:  # noqa: ANN401
        if exc is None:
            log.info("bench: %s done in %.1f s", self.name, time.perf_counter() - self.t)
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, cancellation: not a part's failure
        log.error("bench: %s failed: %s", self.name, exc)
        self.result["errors"].append({"part": self.name, "error": f"{type(exc).__name__}: {exc}",
                                      "traceback": "".join(traceback.format_exception(exc, limit=5))})
        self.value = None
        return True


def _phase(result: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    with _Phase(result, name) as phase:
        phase.value = fn()
    return phase.value


async def _aphase(result: dict[str, Any], name: str, coro: Any) -> Any:
    with _Phase(result, name) as phase:
        phase.value = await coro
    return phase.value


async def _live_parts(config: BenchConfig, live: _Live, result: dict[str, Any]) -> None:
    import aiohttp

    live.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
    try:
        if config.latency_rates:  # --latency-at: (e) only, at the given offered rates
            result["latency"] = await _aphase(result, "(e) latency at given offered rates", live.latency(1.0))
            return
        courses, events = _simulate(config.events, config.seed)
        n = len(events)
        result["events"] = n
        result["raw_consume"] = await _aphase(result, "(a) raw aiokafka consume",
                                              live.raw_consume(events, repeats=5))
        result["faust_empty"] = await _aphase(result, "(b) Faust empty agent", live.faust_empty(courses, events))
        result["pipeline_one_worker"] = await _aphase(result, "(c) pipeline, one worker",
                                                      live.pipeline("one", courses, events, 1))
        if not config.quick:
            result["pipeline_two_workers"] = await _aphase(result, "(d) pipeline, two workers",
                                                           live.pipeline("two", courses, events, 2))
        rate_c = (result.get("pipeline_one_worker") or {}).get("events_per_s")
        if rate_c:
            result["latency"] = await _aphase(result, "(e) latency at fixed offered rates", live.latency(rate_c))
        else:
            result["errors"].append({"part": "(e) latency", "error": "skipped: no rate from (c)"})
        if rate_c:
            result["broker_fetch_latency"] = await _aphase(
                result, "broker fetch latency (plain consumer)",
                live.fetch_latency(rate_c * config.fractions[0], 3.0 if config.quick else 8.0))
        if config.profile and _py_spy() is None:
            result["errors"].append({"part": "profile", "error": "skipped: py-spy not found"})
        elif config.profile and rate_c:
            # enough events to keep the worker busy for the whole sampling window
            n_prof = max(n, int(rate_c * (config.profile_s + 5)))
            p_courses, p_events = (courses, events) if n_prof <= n else _simulate(n_prof, config.seed)
            prof = await _aphase(result, "profile (one worker under py-spy)",
                                 live.pipeline("prof", p_courses, p_events, 1, profile_s=config.profile_s))
            if prof is not None and "profile" in prof:
                spy = prof.pop("profile")
                summary = summarise_profile(Path(spy["raw"]), events=spy["events_in_window"] or None)
                summary.update({k: v for k, v in spy.items() if k not in ("raw", "events_in_window")})
                summary["raw"] = spy["raw"] if config.profile_raw is not None else None
                summary["pipeline_under_profiler"] = {k: prof.get(k) for k in (
                    "events", "events_per_s", "steady_events_per_s", "worker_cpu_utilisation",
                    "worker_cpu_us_per_event", "broker_cpu_utilisation")}
                summary["events_in_window_note"] = ("events_in counted on /stats between py-spy's start "
                                                    "and start + its duration (interpolated)")
                result["profile"] = summary
    finally:
        result["stats_fallbacks_to_metrics"] = live.stats_fallbacks
        await live.session.close()


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _headline(result: dict[str, Any]) -> None:
    """The ratios and headline figures the issue asks for, at the top level of the report."""
    raw = _get(result, "raw_consume", "events_per_s")
    empty = _get(result, "faust_empty", "events_per_s")
    one = _get(result, "pipeline_one_worker", "events_per_s")
    two = _get(result, "pipeline_two_workers", "events_per_s")
    result["raw_consume_events_per_s"] = raw
    result["faust_empty_events_per_s"] = empty
    result["pipeline_events_per_s"] = one
    result["pipeline_two_workers_events_per_s"] = two
    result["pipeline_to_faust_empty"] = _ratio(one, empty)
    result["faust_empty_to_raw"] = _ratio(empty, raw)
    result["two_workers_to_one"] = _ratio(two, one)
    for ph in _get(result, "latency", "phases") or []:
        if ph["fraction"] is None:  # --latency-at: an offered rate, not a fraction of (c)
            continue
        pct = round(ph["fraction"] * 100)
        result[f"p99_event_to_rec_ms_at_{pct}pct"] = ph["event_to_recommendation_ms"]["p99"]
        result[f"p99_event_to_alert_ms_at_{pct}pct"] = ph["event_to_alert_ms"]["p99"]
    result.setdefault("p99_event_to_rec_ms_at_50pct", None)
    result["kernel_speedup_vs_numpy_min"] = _get(result, "kernels", "min_speedup")
    result["kernel_speedup_vs_numpy_min_at"] = _get(result, "kernels", "min_speedup_at")
    result["eval_events_per_s"] = _get(result, "eval", "events_per_s")
    result["eval_events_per_s_source"] = _get(result, "eval", "events_per_s_source")
    result["memory_mb_per_100k_users"] = _get(result, "memory", "mb_per_100k_users")
    result["eval_speed_ratio_long_history"] = _get(result, "scale", "eval_speed_ratio_long_history")
    result["worker_cpu_ratio_1m_to_10k_users"] = _get(result, "scale", "worker_cpu_ratio_1m_to_10k_users")
    result["worker_cpu_ratio_source"] = ("(i): process CPU per event of the one step in the evaluator's process "
                                         "(models.step, as the worker runs it), not of a live worker")
    result["worker_rss_mb_after_c"] = _get(result, "pipeline_one_worker", "worker_memory", 0, "vmrss_mb")


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run every part; write ``config.json_out`` (and the plot); return the report.

    Every process started here (broker, Redis, workers, the empty-agent worker, py-spy) is
    stopped on return, on error and on Ctrl-C/SIGTERM.
    """
    from streams.embedded import EmbeddedServices

    started = time.time()
    result: dict[str, Any] = {
        "report": "coursepulse bench",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "machine": machine_info(),
        "source": _source_info(),
        "errors": [],
    }
    children = Children()
    previous = _sigterm_to_interrupt()
    workdir = Path(tempfile.mkdtemp(prefix="coursepulse-bench-"))
    try:
        only_latency = bool(config.latency_rates)
        result["kernels"] = None if only_latency else _phase(result, "(f) kernels vs NumPy",
                                                             lambda: bench_kernels(quick=config.quick))
        if not only_latency:
            result["memory"] = _phase(result, "(h) memory per 100k users", lambda: _memory_in_subprocess(
                config.memory_users, config.memory_events_per_user, workdir))
            result["eval"] = _phase(result, "(g) offline eval", lambda: bench_eval(
                config.eval_events, oulad=None if config.quick else config.oulad,
                oulad_events=config.oulad_events, seed=config.seed))
            result["scale"] = _phase(result, "(i) cost against users and history", lambda: bench_scale(
                workdir, config.scale_users, config.scale_long_users, config.scale_measured, config.seed))
        requested = Settings.from_env()
        with EmbeddedServices(requested, workdir / "services") as services:
            broker_pid = services.broker.pid if services.broker is not None else None
            result["broker"] = {"kafka_broker": services.settings.kafka_broker,
                                "embedded": services.broker is not None,
                                "partitions": services.settings.partitions,
                                "session_timeout_s": services.settings.session_timeout_s}
            live = _Live(config, services.settings, workdir, broker_pid, children)
            try:
                _run_async(_live_parts(config, live, result))
            finally:
                children.stop_all()
    finally:
        children.stop_all()
        _restore_sigterm(previous)
        shutil.rmtree(workdir, ignore_errors=True)
    _headline(result)
    result["duration_s"] = time.time() - started
    with contextlib.suppress(OSError, ValueError):
        result["machine"]["loadavg_at_end"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    if config.json_out is not None:
        config.json_out.parent.mkdir(parents=True, exist_ok=True)
        config.json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                                                 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    if config.plot_out is not None and not config.latency_rates:  # the plot needs (a)-(d) and fractions of (c)
        _phase(result, "plot", lambda: write_plot(result, config.plot_out))
    if config.plot_out is not None and result.get("scale"):
        _phase(result, "scale plot", lambda: write_scale_plot(
            result, config.plot_out.with_name(config.plot_out.stem + "-scale.png")))
    return result


def _source_info() -> dict[str, Any]:
    """The commit measured and whether the working tree differed from it (read-only git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None,
            "changed_files": status.splitlines() if status else []}


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _sigterm_to_interrupt() -> Any:
    """SIGTERM raises KeyboardInterrupt (so every ``finally`` runs); returns the old handler."""
    if sys.platform == "win32":
        return None
    try:
        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)
