"""GC pauses and loop lag are counted where /stats can show them."""

from __future__ import annotations

import asyncio
import gc
import time

from streams.loopwatch import install_gc_metrics, watch_loop
from streams.metrics import Metrics


def test_gc_collections_are_counted_per_generation():
    m = Metrics()
    install_gc_metrics(m)
    try:
        gc.collect(2)
        assert m.get("gc_collections", "gen2") >= 1
        assert m.get("gc_pause_ms_total", "gen2") > 0
        assert m.get("gc_pause_max_ms", "gen2") <= m.get("gc_pause_ms_total", "gen2")
    finally:
        gc.callbacks[:] = [cb for cb in gc.callbacks if not getattr(cb, "coursepulse_gc", False)]


def test_loop_lag_sees_a_blocked_loop():
    m = Metrics()

    async def main() -> None:
        task = asyncio.create_task(watch_loop(m, period_s=0.01, window_s=0.05))
        await asyncio.sleep(0.03)
        time.sleep(0.15)  # something holds the loop
        await asyncio.sleep(0.012)  # the watcher wakes late, closes its window and reports
        task.cancel()

    asyncio.run(main())
    assert m.get("loop_lag_ms_total") >= 100
    assert m.get("loop_lag_max_ms") >= 100
