"""Process-wide counters and gauges, served as JSON (``/stats``) and Prometheus text (``/metrics``)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

__all__ = ["Metrics", "metrics"]


class Metrics:
    """Monotonic counters (with labels) and gauges. Cheap enough for the per-event path."""

    def __init__(self) -> None:
        self.started = time.time()
        self.counters: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.gauges: dict[tuple[str, str], float] = {}
        self.help: dict[str, str] = {}

    def inc(self, name: str, label: str = "", by: float = 1.0) -> None:
        self.counters[(name, label)] += by

    def set(self, name: str, value: float, label: str = "") -> None:
        self.gauges[(name, label)] = value

    def get(self, name: str, label: str = "") -> float:
        return self.counters.get((name, label), self.gauges.get((name, label), 0.0))

    def snapshot(self) -> dict[str, Any]:
        """All figures as nested JSON: ``{name: value}`` or ``{name: {label: value}}``."""
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started, 3)}
        labelled = {name for name, label in [*self.counters, *self.gauges] if label}
        for (name, label), value in [*self.counters.items(), *self.gauges.items()]:
            if name in labelled:  # a name used with labels: the unlabelled value is under ""
                out.setdefault(name, {})[label] = value
            else:
                out[name] = value
        return out

    def prometheus(self, label_name: str = "kind") -> str:
        """The Prometheus text exposition format."""
        lines: list[str] = []
        for kind, items in (("counter", self.counters.items()), ("gauge", self.gauges.items())):
            seen: set[str] = set()
            for (name, label), value in sorted(items):
                metric = f"coursepulse_{name}"
                if metric not in seen:
                    lines.append(f"# TYPE {metric} {kind}")
                    seen.add(metric)
                labels = f'{{{label_name}="{label}"}}' if label else ""
                lines.append(f"{metric}{labels} {value}")
        return "\n".join(lines) + "\n"


#: the worker's registry
metrics = Metrics()
