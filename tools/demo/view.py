"""The demo's live view (rich) of the workers' ``/stats`` and the tailed outputs."""

from __future__ import annotations

import argparse
import dataclasses
import urllib.request
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson

from streams.producer import ProduceStats
from tools.demo.tail import Tail


@dataclasses.dataclass
class Worker:
    """One worker process the demo started, and the port of its HTTP endpoints."""

    index: int
    port: int
    proc: Any
    log_path: Path

    def stats(self) -> dict[str, Any]:
        """The worker's ``/stats`` (empty while it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=0.5) as r:
                return orjson.loads(r.read())
        except OSError:
            return {}


def _sum(stats: list[dict[str, Any]], name: str) -> float:
    total = 0.0
    for s in stats:
        v = s.get(name, 0)
        total += sum(v.values()) if isinstance(v, dict) else v
    return total



def _pct(values: deque[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000:.0f}"


def _render(args: argparse.Namespace, sent: ProduceStats, stats: list[dict[str, Any]], tail: Tail,
            rates: dict[str, float], elapsed: float):  # noqa: ANN202 - rich renderable
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[b]sent[/b] {sent.total:,} ({rates['sent']:.0f}/s)",
        f"[b]processed[/b] {int(_sum(stats, 'events_in')):,} ({rates['processed']:.0f}/s)",
        f"[b]duplicates dropped[/b] {int(_sum(stats, 'duplicates')):,}",
        f"[b]DLQ[/b] {tail.counts['events-dlq']:,} (injected {sent.expected_dlq:,})",
        f"[b]profiles[/b] {tail.counts['user-profiles']:,}",
        f"[b]event→rec p50/p99[/b] {_pct(tail.rec_latency, 50)}/{_pct(tail.rec_latency, 99)} ms",
        f"[b]workers[/b] {len(stats)}/{args.workers}",
        f"{elapsed:.0f}s",
    )
    seg = Counter(tail.segments.values())
    seg_table = Table(title="users by segment (latest profile)", expand=True)
    for name in ("new", "active", "loyal", "at-risk", "dormant", "churned"):
        seg_table.add_column(name, justify="right")
    seg_table.add_row(*(str(seg.get(n, 0)) for n in ("new", "active", "loyal", "at-risk", "dormant", "churned")))

    prof = Table(title="latest profiles", expand=True)
    for col in ("user", "segment", "activity", "loyalty", "rfm", "views", "buys", "spend", "recent"):
        prof.add_column(col)
    for p in list(tail.samples["user-profiles"])[::-1]:
        prof.add_row(p["user_id"], p["segment"], f"{p['activity']:.2f}", f"{p['loyalty']:.2f}", p["rfm"],
                     str(p["views"]), str(p["purchases"]), f"{p['spend']:.0f}", ",".join(p["recent_courses"][:3]))

    outs = Table(title="other outputs", expand=True)
    outs.add_column("topic")
    outs.add_column("messages", justify="right")
    outs.add_column("latest")
    for topic in ("recommendations", "churn-alerts", "referral-candidates", "events-dlq"):
        latest = tail.samples[topic][-1] if tail.samples[topic] else None
        if latest is None:
            text = "-"
        elif topic == "events-dlq":
            text = f"{latest['source_topic']}@{latest['partition']}:{latest['offset']} {latest['error_kind']}: {latest['error'][:70]}"
        elif topic == "recommendations":
            text = f"{latest['user_id']}: " + ", ".join(f"{i['course_id']} ({i['reason']})" for i in latest["items"][:3])
        elif topic == "churn-alerts":
            text = f"{latest['user_id']} risk {latest['risk']:.2f}, {latest['days_inactive']:.0f} d inactive: {latest['action']}"
        else:
            text = f"{latest['user_id']} propensity {latest['propensity']:.2f} ({latest['incentive']})"
        outs.add_row(topic, f"{tail.counts[topic]:,}", text)
    return Panel(Group(head, seg_table, prof, outs), title="CoursePulse demo (Ctrl-C to stop)")
