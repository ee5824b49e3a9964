"""The benchmark's child processes (workers, the empty-agent worker) and the figures read from them."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench.config import _ROOT

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# child processes and their figures


def child_json(args: list[str], out: Path, timeout: float) -> Any:  # noqa: ANN401 - the child's JSON
    """``python -m tools.bench ARGS... OUT`` in a fresh interpreter; the JSON it wrote to ``out``."""
    import orjson

    subprocess.run([sys.executable, "-m", "tools.bench", *args, str(out)], check=True, timeout=timeout,
                   cwd=_ROOT, env=child_env({}), stdin=subprocess.DEVNULL)
    return orjson.loads(out.read_bytes())


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, unbuffered, with the project on ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (``/proc/<pid>/stat``); None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds per thread of a process (``/proc/<pid>/task/<tid>/stat``); the main thread's tid is pid."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                rest = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(task.name)] = (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _thread_split(pid: int, before: dict[int, float], after: dict[int, float], wall: float) -> dict[str, float] | None:
    """Utilisation of the main (event-loop) thread and of the other threads between two readings."""
    if not before or not after or wall <= 0:
        return None
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    other = sum(v - before.get(tid, 0.0) for tid, v in after.items() if tid != pid)
    return {"main_thread": main / wall, "other_threads": other / wall}


def _system_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies over every core since boot (``/proc/stat``)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def _busy_cores(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    """Cores busy on average between two :func:`_system_cpu` readings (0 .. cpu_count)."""
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def _others(busy: float | None, wall: float, cpu_s: list[float | None]) -> float | None:
    """Cores kept busy by processes other than the benchmark's own (other jobs, Redis, the kernel)."""
    if busy is None or wall <= 0:
        return None
    return max(0.0, busy - sum(c for c in cpu_s if c is not None) / wall)


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process in MB (``/proc/<pid>/status``)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[f"{key.lower()}_mb"] = int(line.split()[1]) / 1024
    return out


@dataclass
class Child:
    """A process the benchmark started: its name, handle, log file and HTTP port."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        """The last ``n`` lines of its log (empty when unreadable)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Children:
    """Every process the benchmark started, stopped in reverse order (also on error and Ctrl-C)."""

    def __init__(self) -> None:
        self.items: list[Child] = []

    def start(self, name: str, argv: list[str], log_path: Path, env: dict[str, str], port: int | None = None) -> Child:
        """Start a child (it dies with this process) and keep it for :meth:`stop_all`."""
        from streams.embedded import start_process

        child = Child(name, start_process(argv, log_path, env), log_path, port)
        self.items.append(child)
        return child

    def stop(self, children: Iterable[Child], timeout: float = 20.0) -> None:
        """SIGTERM the given children, wait up to ``timeout``, then kill what is left."""
        children = [c for c in children if c.alive()]
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM within %.0f s; killing it", c.name, timeout)
                c.proc.kill()
                c.proc.wait(timeout=5)

    def stop_all(self) -> None:
        """Stop every child started, the latest first."""
        self.stop(reversed(self.items))


class _PhaseError(RuntimeError):
    pass


def _counters(stats: dict[str, Any]) -> dict[str, Any]:
    """A worker's ``/stats`` without the per-partition gauges (watermarks, drift counts, ...)."""
    per_partition = ("watermark_ms", "churn_drift_count", "referral_model_examples", "referral_model_auc")
    return {k: v for k, v in stats.items() if k not in per_partition
            and not (isinstance(v, dict) and len(v) > 20)}


def _interpolate(samples: list[tuple[float, float]], t: float) -> float:
    """The counter at time ``t`` from ``(time, value)`` samples (clamped to the last one)."""
    prev = samples[0]
    for cur in samples:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return cur[1]
            return prev[1] + (cur[1] - prev[1]) * (t - prev[0]) / (cur[0] - prev[0])
        prev = cur
    return samples[-1][1]


def _steady_rate(samples: list[tuple[float, float]], target: int) -> float | None:
    """Rate between the samples nearest 10 % and 90 % of ``target`` (leaves start-up and tail out)."""
    lo = next((s for s in samples if s[1] >= 0.1 * target), None)
    hi = next((s for s in samples if s[1] >= 0.9 * target), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _py_spy() -> str | None:
    near = Path(sys.executable).parent / "py-spy"
    return str(near) if near.exists() else shutil.which("py-spy")
