"""Readiness and broker loss: a worker says when it cannot do its job, and gives up loudly.

:class:`BrokerWatch` asks the broker every ``interval`` seconds, with its own aiokafka client,
for the topic list and the end offsets of the app's changelog partitions:

* broker unreachable, or a changelog topic missing: the worker is *not ready* (``/readyz`` 503
  with the reason); Faust's clients go on retrying. When that lasts
  ``COURSEPULSE_BROKER_LOSS_EXIT_S`` seconds the worker exits non-zero, for its supervisor to
  restart it.
* a changelog partition's end offset lower than one seen before (the broker came back without
  the data the worker's state was built from, e.g. a memory-only broker restarted empty): the
  worker exits non-zero at once, rather than run on and write outputs that go backwards.

:class:`SendGate` keeps what this worker has not yet delivered out of a broker that came back
empty. When a connection of the process to the broker breaks (the broker died or restarted),
the gate closes: aiokafka's produce requests wait, and so do the flushes before commits, until
a check of the watch that began after the break has found every changelog end where it was.
Then they go out; if the ends went back the worker gives up with them still held. Without it,
the producer re-sent its buffered records into the restarted broker within a second, before
any check could see the loss (on Tansu those writes then made the broker refuse the restarted
worker's changelog writes at offset 0). Holds are counted in ``send_holds``; a broker that
restarts with its data costs at most one check interval of delay.

:func:`readiness` is ``/readyz``: ready when partitions are assigned, table recovery has
completed and the broker answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from streams.kafka_auth import aiokafka_kwargs
from streams.metrics import metrics
from streams.settings import Settings

__all__ = ["EXIT_BROKER_LOST", "BrokerLostError", "BrokerWatch", "SendGate", "exit_status", "readiness"]

log = logging.getLogger(__name__)

#: exit status of a worker that gave up on its broker
EXIT_BROKER_LOST = 3


class BrokerLostError(RuntimeError):
    """The broker (or the changelog the worker's state came from) is gone."""


class SendGate:
    """Produce requests held from a broken broker connection until the watch has checked the
    changelog ends again (see the module docstring)."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        #: the watch check that must have begun after the break (its sequence number)
        self.reopen_after = 0
        self.holds = 0
        self.held_since: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether produce requests go out now."""
        return self._open.is_set()

    def close(self, checks_begun: int, why: str) -> None:
        """Hold produce requests until a check numbered above ``checks_begun`` passes."""
        self.reopen_after = checks_begun
        if self._open.is_set():
            self._open.clear()
            self.holds += 1
            self.held_since = time.monotonic()
            metrics.inc("send_holds")
            log.warning("%s: holding produce requests until the changelog ends are checked", why)

    def checked(self, check: int) -> None:
        """A check numbered ``check`` found the changelog ends where they were."""
        if not self._open.is_set() and check > self.reopen_after:
            log.warning("changelog ends checked: releasing produce requests held %.1f s",
                        time.monotonic() - (self.held_since or time.monotonic()))
            self._open.set()

    async def wait(self) -> None:
        """Return when produce requests may go out."""
        await self._open.wait()


#: the watch whose gate holds this process's produce requests (None until one holds sends)
_gate_owner: BrokerWatch | None = None
_gate_installed = False


def _install_send_gate(watch: BrokerWatch) -> SendGate:
    """Route aiokafka's produce requests and broken-connection callbacks through ``watch``'s
    gate (one per process: the last watch installed owns it)."""
    global _gate_owner, _gate_installed  # noqa: PLW0603 - one gate per process, read by the wrappers
    from aiokafka.client import AIOKafkaClient
    from aiokafka.conn import CloseReason
    from aiokafka.producer.sender import Sender

    gate = SendGate()
    _gate_owner = watch
    if not _gate_installed:
        _gate_installed = True
        send_produce_req = Sender._send_produce_req  # noqa: SLF001
        on_connection_closed = AIOKafkaClient._on_connection_closed  # noqa: SLF001

        async def _send_produce_req(self: Any, node_id: int, batches: Any) -> Any:  # noqa: ANN401
            owner = _gate_owner
            if owner is not None and owner.gate is not None and not owner.gate.is_open:
                await owner.gate.wait()
            return await send_produce_req(self, node_id, batches)

        def _on_connection_closed(self: Any, conn: Any, reason: Any) -> Any:  # noqa: ANN401
            owner = _gate_owner
            if owner is not None and owner.gate is not None and reason == CloseReason.CONNECTION_BROKEN:
                owner.gate.close(owner.checks_begun, f"a connection to the broker broke ({conn.host}:{conn.port})")
            return on_connection_closed(self, conn, reason)

        Sender._send_produce_req = _send_produce_req  # type: ignore[method-assign]  # noqa: SLF001
        AIOKafkaClient._on_connection_closed = _on_connection_closed  # type: ignore[method-assign]  # noqa: SLF001
    return gate


class BrokerWatch:
    """Watches the broker and the changelog topics of ``app``; see the module docstring."""

    def __init__(self, app: Any, settings: Settings, interval: float = 1.0, timeout: float = 5.0) -> None:  # noqa: ANN401
        self.app = app
        self.settings = settings
        self.interval = interval
        self.timeout = timeout
        #: why the broker is not usable now (None: it is)
        self.problem: str | None = "broker not checked yet"
        self.lost_since: float | None = None
        self.ends: dict[tuple[str, int], int] = {}
        self.checks = 0
        #: checks begun (a check that begins after a broken connection may release the gate)
        self.checks_begun = 0
        self.gate: SendGate | None = None
        self._consumer: Any = None

    def hold_sends(self) -> SendGate:
        """Install the process's :class:`SendGate`, released by this watch's checks."""
        self.gate = _install_send_gate(self)
        return self.gate

    def changelog_topics(self) -> list[str]:
        """The full names of every table's changelog topic, sorted."""
        return sorted(t.changelog_topic.get_topic_name() for t in self.app.tables.values())

    async def run(self) -> None:
        """Check until cancelled; give up as the module docstring says."""
        if self.gate is None:
            self.hold_sends()
        try:
            while exit_status is None:
                await self.check_once()
                await asyncio.sleep(self.interval)
        finally:
            await self._close()

    async def check_once(self) -> None:
        """One check of the broker and the changelogs, bounded by the timeout."""
        self.checks_begun += 1
        check = self.checks_begun
        try:
            verified = await asyncio.wait_for(self._check(), self.timeout)
        except BrokerLostError as exc:
            await self.give_up(str(exc))
            return
        except TimeoutError:
            self._lost(f"the broker did not answer within {self.timeout:.0f} s")
        except Exception as exc:  # noqa: BLE001 - any failure to talk to the broker is a loss
            self._lost(f"the broker is unreachable: {type(exc).__name__}: {exc}")
            await self._close()  # a fresh client next time (the broker may come back on a new address)
        else:
            if self.lost_since is not None:
                log.warning("broker back after %.1f s", time.monotonic() - self.lost_since)
            self.problem, self.lost_since = None, None
            if verified and self.gate is not None:
                self.gate.checked(check)
        self.checks += 1
        metrics.set("broker_ok", 0.0 if self.problem else 1.0)
        limit = self.settings.broker_loss_exit_s
        if self.lost_since is not None and limit > 0 and time.monotonic() - self.lost_since >= limit:
            await self.give_up(f"{self.problem} for {limit:.0f} s (COURSEPULSE_BROKER_LOSS_EXIT_S)")

    def _lost(self, problem: str) -> None:
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            log.error("%s: not ready; exiting in %.0f s unless it comes back", problem, self.settings.broker_loss_exit_s)
        self.problem = problem

    async def _check(self) -> bool:
        """True when every changelog end was compared (or nothing was written to one yet)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                        **aiokafka_kwargs(self.settings), group_id=None,
                                        enable_auto_commit=False, request_timeout_ms=int(self.timeout * 1000),
                                        metadata_max_age_ms=5_000)
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        consumer = self._consumer
        existing = await consumer.topics()  # a fresh metadata request
        wanted = self.changelog_topics()
        missing = [t for t in wanted if t not in existing]
        recovered = self.app.tables.recovery.completed.is_set()
        if missing:
            # before the first recovery Faust may still be creating them
            if recovered and any(end > 0 for (topic, _), end in self.ends.items() if topic in missing):
                self._lost(f"changelog topics are gone: {', '.join(missing)}")
                msg = f"changelog topics are gone from the broker: {', '.join(missing)}"
                raise BrokerLostError(msg)
            return not any(end > 0 for (topic, _), end in self.ends.items() if topic in missing)
        tps = [TopicPartition(t, p) for t in wanted for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return not any(end > 0 for end in self.ends.values())
        ends = dict(await consumer.end_offsets(tps))
        went_back = [(tp, self.ends[(tp.topic, tp.partition)], end) for tp, end in ends.items()
                     if end < self.ends.get((tp.topic, tp.partition), 0)]
        if went_back:
            went_back = await self._confirm(went_back, ends)
        if went_back:
            tp, before, now = went_back[0]
            msg = (f"{len(went_back)} changelog partitions lost records (e.g. {tp.topic}[{tp.partition}]: end {before} -> {now}): "
                   "the broker no longer has the data this worker's state was built from")
            raise BrokerLostError(msg)
        for tp, end in ends.items():
            key = (tp.topic, tp.partition)
            self.ends[key] = max(end, self.ends.get(key, 0))
        return True

    async def _confirm(self, went_back: list[tuple[Any, int, int]], ends: dict[Any, int]) -> list[tuple[Any, int, int]]:
        """The partitions of ``went_back`` (``(tp, end seen before, end reported now)``) whose
        true end, read by fetching (:class:`streams.recovery.EndOffsetProbe`), is below the end
        seen before; ``ends`` gets the true ends. A reported end can go back without any loss:
        Tansu reports the end of a partition one batch short at times and the true end at
        others (a drop of a whole batch, e.g. 42 -> 4), which alone made workers give up."""
        from streams.recovery import EndOffsetProbe

        true = await EndOffsetProbe(self.settings, mode="on").true_ends({tp: now for tp, _, now in went_back})
        lost = []
        for tp, before, _ in went_back:
            ends[tp] = max(ends[tp], true.get(tp, 0))
            if ends[tp] < before:
                lost.append((tp, before, ends[tp]))
        if len(lost) < len(went_back):
            metrics.inc("broker_short_end_reports", by=len(went_back) - len(lost))
            log.info("%d changelog partitions were reported with an end below one seen before, but hold "
                     "their records (the broker reported the end short)", len(went_back) - len(lost))
        return lost

    async def give_up(self, reason: str) -> None:
        """Exit non-zero: through Faust's crash handling, or hard if that does not end the process."""
        self.problem = reason
        log.critical("giving up: %s; exiting with status %d for the supervisor to restart the worker", reason, EXIT_BROKER_LOST)
        metrics.set("broker_ok", 0.0)

        def hard_exit() -> None:  # pragma: no cover - runs when a clean stop hangs on the dead broker
            os._exit(EXIT_BROKER_LOST)

        timer = threading.Timer(15.0, hard_exit)
        timer.daemon = True
        timer.start()
        global exit_status  # noqa: PLW0603 - read by the runner for the process's exit status
        exit_status = EXIT_BROKER_LOST
        await self._close()
        await self.app.crash(BrokerLostError(reason))

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), 2.0)
            except Exception:  # noqa: BLE001 - closing a client of a dead broker
                log.debug("closing the broker watch client failed", exc_info=True)


#: set when the worker gives up on its broker; the runner exits with it
exit_status: int | None = None


def readiness(app: Any, watch: BrokerWatch | None) -> tuple[bool, list[str]]:  # noqa: ANN401
    """Whether the worker can do its job now, and the reasons it cannot."""
    reasons: list[str] = []
    if watch is not None and watch.problem:
        reasons.append(watch.problem)
    try:
        assigned = app.consumer.assignment()
    except Exception:  # noqa: BLE001 - no consumer yet
        assigned = set()
    if not assigned:
        reasons.append("no partitions assigned")
    if app.rebalancing:
        reasons.append("rebalancing")
    recovery = app.tables.recovery
    if not recovery.completed.is_set() or recovery.in_recovery:
        offsets, highwaters = recovery.active_offsets, recovery.active_highwaters
        remaining = {f"{tp.topic}[{tp.partition}] {offsets[tp]}->{highwaters[tp]}": n
                     for tp, n in recovery.active_remaining().items() if n > 0}
        reasons.append(f"recovering tables: {sum(remaining.values())} changelog records to read"
                       + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(remaining.items())[:8])})" if remaining else ""))
    return not reasons, reasons
