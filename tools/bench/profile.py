"""The py-spy profile of a worker, summarised as inclusive/self time per function and per package."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tools.bench.config import _ROOT

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# the profile


_PROJECT_PACKAGES = ("agents", "models", "schemas", "streams")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>-?\d+))?\)$")
#: frames that only start a process or a thread: every sample below them is someone else's work
_ENTRY_FILES = ("<frozen runpy>", "streams/cli.py", "streams/runner.py", "threading.py", "mode/threads.py")
_ENTRY_FUNCTIONS = ("Worker.execute_from_commandline",)
#: frames whose *self* time is an event loop's C code (uvloop): the main thread's loop runs in
#: Worker.execute_from_commandline, the Faust consumer thread's in ServiceThread._start_thread
_LOOP_FRAMES = (("Worker.execute_from_commandline", "mode/worker.py"),
                ("ServiceThread._start_thread", "mode/threads.py"))
EVENT_LOOP_C = "event loop (uvloop, C)"
_MACHINERY = frozenset({EVENT_LOOP_C, "faust", "mode", "aiokafka", "stdlib:asyncio", "async_timeout", "aiohttp",
                        "yarl", "multidict", "uvloop", "stdlib:selectors", "stdlib:threading"})


def _frame_key(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), ""
    return m["func"], m["file"]


def _package(path: str) -> str:
    """Group of a frame's file (py-spy prints it relative to its ``sys.path`` entry)."""
    import sysconfig

    p = path.replace("\\", "/")
    head = p.split("/", 1)[0]
    if head in _PROJECT_PACKAGES and (_ROOT / p).exists():
        return f"project:{head}"
    if p.startswith("<frozen") or (Path(sysconfig.get_paths()["stdlib"]) / p).exists():
        return f"stdlib:{head.removesuffix('.py').removeprefix('<frozen ').removesuffix('>')}"
    if p == "<string>":
        return "generated code (<string>: dataclass __init__ etc.)"
    return head.removesuffix(".py") or "?"


def summarise_profile(raw: Path, *, top: int = 15, rate_hz: float = 100.0,
                      events: float | None = None) -> dict[str, Any]:
    """Inclusive and self time per function, and self time per package, of a py-spy raw profile.

    ``inclusive_below_entry_frames`` leaves out the frames that merely start the process or a
    thread (they hold every sample below them). Self time of the frames an event loop runs in is
    the loop's own C code (uvloop): it is counted as :data:`EVENT_LOOP_C`, not as ``mode``.
    ``events`` (processed while sampling) turns shares into microseconds per event.
    """
    inclusive: Counter[tuple[str, str]] = Counter()
    own: Counter[tuple[str, str]] = Counter()
    work: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    with open(raw, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in stack.split(";") if f]
            if not frames:
                continue
            total += n
            for key in {_frame_key(f) for f in frames}:
                inclusive[key] += n
                if key[1] not in _ENTRY_FILES and key[0] not in _ENTRY_FUNCTIONS:
                    work[key] += n
            leaf = _frame_key(frames[-1])
            own[leaf] += n
            packages[EVENT_LOOP_C if leaf in _LOOP_FRAMES else _package(leaf[1])] += n

    def us(c: int) -> float | None:
        return c / rate_hz / events * 1e6 if events else None

    def rows(counter: Counter[Any], limit: int | None) -> list[dict[str, Any]]:
        return [{"function": k[0], "file": k[1], "pct": 100.0 * c / total, "us_per_event": us(c)}
                for k, c in counter.most_common(limit)]

    return {
        "samples": total,
        "rate_hz": rate_hz,
        "sampled_s": total / rate_hz,
        "events_in_window": events,
        "sampled_us_per_event": us(total),
        "inclusive": rows(inclusive, top * 3),
        "inclusive_below_entry_frames": rows(work, top),
        "entry_frames_left_out": [*_ENTRY_FILES, *_ENTRY_FUNCTIONS],
        "self": rows(own, top),
        "self_by_package": [{"package": k, "pct": 100.0 * c / total, "us_per_event": us(c)}
                            for k, c in packages.most_common()],
        "split": {name: {"pct": 100.0 * c / total, "us_per_event": us(c)} for name, c in (
            ("streaming machinery (event loops, Faust, mode, aiokafka, asyncio)",
             sum(c for k, c in packages.items() if k in _MACHINERY)),
            ("pipeline work (everything else: agents, models, River, NumPy, Redis client, ...)",
             sum(c for k, c in packages.items() if k not in _MACHINERY)),
        )} if total else {},
    }
