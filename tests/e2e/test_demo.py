"""The main job end to end: `coursepulse demo` with real worker processes, broker and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e


def _children_named(name: str, tag: str) -> set[int]:
    """Processes whose executable path contains ``name`` and whose environment carries this test's
    ``tag`` (the demo's children inherit it; other tests may run brokers and workers in parallel,
    and the demo's children run in sessions of their own)."""
    out = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and name.encode() in cmd[0]:
                try:
                    environ = (proc / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"COURSEPULSE_TEST_TAG={tag}".encode() in environ:
                    out.add(int(proc.name))
    return out


def _env(tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BROKER", "REDIS_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    env["COURSEPULSE_TEST_TAG"] = tag
    return env


def test_demo_headless_runs_and_summarises_every_topic(tmp_path):
    tag = uuid.uuid4().hex
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--duration", "20", "--headless", "--rate", "400",
         "--users", "500", "--summary-json", str(summary_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tag), start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    summary = orjson.loads(summary_path.read_bytes())
    topics = summary["topics"]
    for name in ("views", "purchases", "shares", "courses", "recommendations", "churn-alerts",
                 "referral-candidates", "user-profiles", "events-dlq"):
        assert name in topics
    assert topics["views"] > 1000
    assert topics["user-profiles"] > 0 and topics["recommendations"] > 0
    produced = summary["produced"]
    assert topics["events-dlq"] == produced["expected_dlq"] > 0
    good = sum(produced["good"].values()) - produced["good"].get("courses", 0)
    assert summary["processed"]["events_in"] == good
    assert not _children_named("tansu", tag), "the embedded broker outlived the demo"


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--headless", "--users", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(tag), start_new_session=True,
    )
    deadline = time.monotonic() + 90
    seen = b""
    while b"processed" not in seen and time.monotonic() < deadline:  # wait until traffic flows
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    # the check below can see the demo's broker and workers: they are running now
    assert _children_named("tansu", tag), "the demo's embedded broker is not found by its tag"
    assert [p for p in _children_named(sys.executable, tag) if _cmdline(p).endswith(b"worker")]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends the whole group on Ctrl-C
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the demo did not stop within 60 s of Ctrl-C")
    time.sleep(1)
    assert not _children_named("tansu", tag), "the embedded broker outlived the demo"
    leftover = [p for p in _children_named(sys.executable, tag) if _cmdline(p).endswith(b"worker")]
    assert not leftover, f"worker processes left behind: {leftover}"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        return b""
