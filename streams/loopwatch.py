"""What stalls the worker's event loop: garbage-collector pauses and how late timers wake.

Every event waits for whatever holds the loop: a long timer callback, a model checkpoint, or a
full collection of the garbage collector over every object the worker keeps. These figures go
to ``/stats`` and ``/metrics`` so an operator can tell which one a latency spike was:

- ``gc_pause_ms_total{kind=genN}``, ``gc_collections{kind=genN}``, ``gc_pause_max_ms{kind=genN}``;
- ``loop_lag_max_ms``: the largest delay of a 20 ms sleep over the last report interval (the
  longest the loop was held), ``loop_lag_ms_total``: the sum of such delays.
"""

from __future__ import annotations

import asyncio
import gc
import time

from streams.metrics import Metrics

__all__ = ["install_gc_metrics", "watch_loop"]

_started: list[float] = [0.0]


def install_gc_metrics(metrics: Metrics) -> None:
    """Count collections and their pause per generation (idempotent)."""

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _started[0]) * 1000
        gen = f"gen{info.get('generation', '?')}"
        metrics.inc("gc_collections", gen)
        metrics.inc("gc_pause_ms_total", gen, by=ms)
        if ms > metrics.get("gc_pause_max_ms", gen):
            metrics.set("gc_pause_max_ms", ms, gen)

    if not any(getattr(cb, "coursepulse_gc", False) for cb in gc.callbacks):
        on_gc.coursepulse_gc = True  # type: ignore[attr-defined]
        gc.callbacks.append(on_gc)


async def watch_loop(metrics: Metrics, period_s: float = 0.02, window_s: float = 10.0) -> None:
    """Sleep ``period_s`` forever and record how late each wake-up is (the loop was held)."""
    window_max, window_end = 0.0, time.monotonic() + window_s
    while True:
        t = time.monotonic()
        await asyncio.sleep(period_s)
        late_ms = max(0.0, (time.monotonic() - t - period_s) * 1000)
        metrics.inc("loop_lag_ms_total", by=late_ms)
        window_max = max(window_max, late_ms)
        if time.monotonic() >= window_end:
            metrics.set("loop_lag_max_ms", round(window_max, 3))
            window_max, window_end = 0.0, time.monotonic() + window_s
