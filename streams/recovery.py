"""Table recovery reads every changelog to its true end, also on brokers that report it short.

Faust decides that a table is recovered when it has read a changelog partition up to the end the
broker reports (``ListOffsets`` latest, in ``Recovery._build_highwaters``). Tansu answers with the
base offset of the partition's last record batch + 1, not the offset after its last record: a
restarted worker then stops recovering before the last batch (its state misses those writes) and,
with a RocksDB store that had written them, Faust's consistency check sees a persisted offset
past the "end" and stops the worker (``ConsistencyError``) on every restart.

The end-offset probe fixes the end Faust works with: from the reported end less one it fetches
each changelog partition until the broker answers a fetch of it with nothing (not merely until a
poll times out: on a loaded machine a slow first fetch looked like an empty log, and a failover
recovered a partition to nothing), and takes the offset after the last record it saw when that
is further. ``COURSEPULSE_END_OFFSET_PROBE``:

* ``on``: probe before every recovery;
* ``off``: Faust's behaviour, untouched;
* ``auto`` (default): probe until the broker has shown what it does. Records past a reported end
  mean the broker reports ends short (Tansu): the probe stays on. Reported ends found true on 16
  non-empty partitions (Apache Kafka) switch the probe off for the rest of the process, so Kafka's
  recoveries are Faust's own after that look at the tails. The embedded launcher sets ``on``.

The probe raises an end to an offset that holds a record, and lowers one with no record before it
to the log's real end (found from the start), so on a broker that reports true ends it changes
nothing. :func:`install` patches ``Recovery._build_highwaters`` once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from streams.kafka_auth import aiokafka_kwargs
from streams.metrics import metrics
from streams.settings import Settings

__all__ = ["EndOffsetProbe", "install", "probe", "wipe_partition"]

log = logging.getLogger(__name__)

#: how long one poll waits; a partition is at its end when the broker answered a fetch of it empty
_POLL_MS = 200
_FETCH_MAX_WAIT_MS = 100
#: a probe stops after this long in any case: the ends confirmed so far are used, the others
#: stay at least where the broker reported them (logged)
_DEADLINE_S = 60.0
#: auto: the reported ends are taken as true after this many non-empty partitions were probed and
#: none was short (a partition whose last batch holds one record looks right on Tansu too)
_DECIDE_AFTER = 16


class EndOffsetProbe:
    """Finds the true end of changelog partitions; remembers what the broker was seen to do."""

    def __init__(self, settings: Settings, mode: str | None = None) -> None:
        self.settings = settings
        self.mode = mode or settings.end_offset_probe
        #: auto: None until a probe looked at a non-empty partition; then whether ends were short
        self.short_ends: bool | None = None
        #: non-empty partitions whose reported end was found true (auto decides after _DECIDE_AFTER)
        self.true_ends_seen = 0
        #: figures of the last probe, for /stats and tests
        self.last: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        """Whether ends are probed: ``on``, or ``auto`` until the broker is seen to report true ends."""
        if self.mode == "on":
            return True
        if self.mode == "off":
            return False
        return self.short_ends is not False

    async def true_ends(self, reported: Mapping[Any, int]) -> dict[Any, int]:
        """``tp -> end`` (offset after the last record) of each partition, at least ``reported``.

        ``reported`` maps topic partitions (anything with ``topic`` and ``partition``) to the end
        the broker reported.
        """
        from aiokafka import AIOKafkaConsumer, TopicPartition

        ends = {tp: max(0, int(end)) for tp, end in reported.items()}
        if not ends:
            return ends
        started = time.monotonic()
        by_atp = {TopicPartition(tp.topic, tp.partition): tp for tp in ends}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers, **aiokafka_kwargs(self.settings),
            group_id=None, enable_auto_commit=False, auto_offset_reset="latest",
            fetch_max_wait_ms=_FETCH_MAX_WAIT_MS, request_timeout_ms=10_000,
        )
        await consumer.start()
        try:
            deadline = started + _DEADLINE_S
            tails, done, seen = await _read_to_end(
                consumer, {atp: max(0, ends[tp] - 1) for atp, tp in by_atp.items()}, deadline)
            if len(done) < len(by_atp):
                log.warning("end-offset probe: %d of %d changelog partitions not confirmed at their end after "
                            "%.0f s; they recover at least to the end the broker reported",
                            len(by_atp) - len(done), len(by_atp), _DEADLINE_S)
                metrics.inc("recovery_probe_unconfirmed", by=len(by_atp) - len(done))
            for atp, end in tails.items():
                tp = by_atp[atp]
                ends[tp] = max(ends[tp], end)
            # the broker answered "nothing" at the reported end - 1: the reported end is past the
            # log (seen on Tansu after a broker restart: an end of 1 for an empty partition, so
            # recovery waited for a record that never came); the true end is then found from the
            # beginning, and an end is lowered only where that read was confirmed too
            phantom = [atp for atp, tp in by_atp.items() if ends[tp] > 0 and atp in done and atp not in tails]
            if phantom:
                starts = await consumer.beginning_offsets(phantom)
                begin = {atp: int(starts.get(atp) or 0) for atp in phantom}
                found, found_done, more = await _read_to_end(consumer, begin, deadline)
                seen += more
                for atp in phantom:
                    tp, end = by_atp[atp], found.get(atp, begin[atp])
                    if atp in found_done and end < ends[tp]:
                        log.warning("%s[%d]: the broker reports its end at %d but the log ends at %d: "
                                    "recovery stops there", atp.topic, atp.partition, ends[tp], end)
                        ends[tp] = end
                        metrics.inc("recovery_phantom_ends")
        finally:
            await consumer.stop()
        self._learn(reported, ends)
        self.last = {"partitions": len(ends), "records_read": seen, "seconds": round(time.monotonic() - started, 3),
                     "short": sum(1 for tp, end in ends.items() if end > reported[tp])}
        return ends

    def _learn(self, reported: Mapping[Any, int], ends: Mapping[Any, int]) -> None:
        short = [tp for tp, end in ends.items() if end > reported[tp]]
        if short:
            if self.short_ends is not True:
                log.warning("the broker reports the end of %d of %d changelog partitions short (e.g. %s: "
                            "reported %d, true end %d): recovery reads to the true end",
                            len(short), len(ends), short[0], reported[short[0]], ends[short[0]])
            self.short_ends = True
        elif self.short_ends is None:
            self.true_ends_seen += sum(1 for end in ends.values() if end > 0)
            if self.true_ends_seen >= _DECIDE_AFTER:
                self.short_ends = False
                if self.mode == "auto":
                    log.info("the broker reported the true end of %d non-empty changelog partitions: end-offset probe off",
                             self.true_ends_seen)


async def _read_to_end(consumer: Any, starts: Mapping[Any, int],
                      deadline: float) -> tuple[dict[Any, int], set[Any], int]:
    """Read the partitions of ``starts`` from those offsets until, for each, a fetch at the
    consumer's position came back empty (the partition's end at that moment), or the deadline.

    Returns the offset after the last record seen per partition that had any, the partitions
    whose end was confirmed that way, and how many records were read. A partition counts as at
    its end only on the broker's own empty answer for it (aiokafka stamps every fetch response of
    a partition, ``last_poll_timestamp``): a fetch that is merely slow (a loaded machine, a
    connection still being set up) never ends a partition early.
    """
    consumer.assign(list(starts))
    for atp, offset in starts.items():
        consumer.seek(atp, offset)
    tails: dict[Any, int] = {}
    #: the poll stamp of the fetch response that carried a partition's last records
    stamp_of_records: dict[Any, int | None] = {}
    done: set[Any] = set()
    seen = 0
    while len(done) < len(starts) and time.monotonic() < deadline:
        open_tps = [atp for atp in starts if atp not in done]
        batch = await consumer.getmany(*open_tps, timeout_ms=_POLL_MS)
        for atp, records in batch.items():
            if records:
                seen += len(records)
                tails[atp] = max(tails.get(atp, 0), records[-1].offset + 1)
                stamp_of_records[atp] = consumer.last_poll_timestamp(atp)
        for atp in open_tps:
            if batch.get(atp):
                continue
            stamp = consumer.last_poll_timestamp(atp)
            # a response for this partition after the one that carried its last records, and it
            # brought nothing (records are handed out before the partition is fetched again)
            if stamp is not None and stamp != stamp_of_records.get(atp):
                done.add(atp)
    return tails, done, seen


#: the worker's probe (set by :func:`install`)
probe: EndOffsetProbe | None = None


def install(settings: Settings) -> EndOffsetProbe:
    """Make Faust's table recovery use the probed ends; idempotent. Returns the probe."""
    global probe  # noqa: PLW0603 - one probe per worker process
    from faust.tables import recovery as faust_recovery

    probe = EndOffsetProbe(settings)
    original = faust_recovery.Recovery._build_highwaters  # noqa: SLF001 - the hook
    original = getattr(original, "coursepulse_original", original)

    async def build_highwaters(self, consumer, tps, destination, title):  # noqa: ANN001, ANN202 - faust's
        await original(self, consumer, tps, destination, title)
        if probe is None or not probe.enabled or not tps:
            return
        # Faust keeps "highwater" = end - 1 (the offset of the last record)
        reported = {tp: destination[tp] + 1 for tp in tps}
        try:
            ends = await probe.true_ends(reported)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:  # a failed probe must not stop recovery: Faust's ends are used
            log.exception("end-offset probe failed; recovering to the ends the broker reported")
            return
        lowered = {tp: end - 1 for tp, end in ends.items() if end < reported[tp]}
        for tp, highwater in lowered.items():  # a reported end past the log's last record
            destination[tp] = highwater
        raised = {tp: end - 1 for tp, end in ends.items() if end > reported[tp]}
        if raised:
            log.info("%s recovery reads to the probed end of %d changelog partitions: %s", title, len(raised),
                     ", ".join(f"{tp.topic}[{tp.partition}] {reported[tp] - 1}->{hw}" for tp, hw in sorted(raised.items())))
            for tp, highwater in raised.items():  # assigned: Counter.update would add
                destination[tp] = highwater
            metrics.inc("recovery_short_ends", by=len(raised))

    build_highwaters.coursepulse_original = original  # type: ignore[attr-defined]
    faust_recovery.Recovery._build_highwaters = build_highwaters  # noqa: SLF001
    _install_rebuild_when_ahead(faust_recovery.Recovery)
    _no_auto_create_on_metadata()
    return probe


def _install_rebuild_when_ahead(recovery_cls: Any) -> None:
    """A local store ahead of its changelog is wiped and rebuilt from the changelog.

    After the end-offset probe, a table partition whose persisted offset is past the changelog's
    end means the cluster lost records the local store has (a broker that came back empty, an
    unclean leader election). The cluster is the source of truth — the input events behind the
    extra local state are gone too — so, as Kafka Streams does with a corrupted task, the
    partition's local store is deleted and recovered from the changelog as it is, instead of the
    crash loop of Faust's consistency check (``ConsistencyError`` on every restart). Counted in
    ``changelog_ahead_rebuilt`` and logged as an error.
    """
    original = getattr(recovery_cls._build_offsets, "coursepulse_original", recovery_cls._build_offsets)  # noqa: SLF001

    async def build_offsets(self, consumer, tps, destination, title):  # noqa: ANN001, ANN202 - faust's
        await original(self, consumer, tps, destination, title)
        if title != "active":
            return
        for tp in tps:
            highwater, offset = self.active_highwaters.get(tp), destination.get(tp)
            if highwater is None or offset is None or offset <= highwater:
                continue
            table = self.tables._changelogs.get(tp.topic)  # noqa: SLF001 - changelog topic -> table
            if table is None:
                continue
            log.error("%s[%d]: the local store is at offset %d but its changelog ends at %d (the cluster lost "
                      "records): the partition's local store is deleted and recovered from the changelog",
                      tp.topic, tp.partition, offset, highwater)
            wipe_partition(table.data, tp.partition)
            destination[tp] = -1
            metrics.inc("changelog_ahead_rebuilt", tp.topic)

    build_offsets.coursepulse_original = original  # type: ignore[attr-defined]
    recovery_cls._build_offsets = build_offsets  # noqa: SLF001


def wipe_partition(store: Any, partition: int) -> bool:
    """Delete one partition of a store's local data (a RocksDB database directory); the memory
    store keeps nothing across processes and has nothing to wipe. Returns whether it wiped."""
    import shutil

    dbs = getattr(store, "_dbs", None)
    if dbs is None or not hasattr(store, "partition_path"):
        return False
    db = dbs.pop(partition, None)
    if db is not None and hasattr(db, "close"):
        try:
            db.close()
        except Exception:  # noqa: BLE001 - being deleted anyway
            log.debug("closing the RocksDB of partition %d failed", partition, exc_info=True)
    shutil.rmtree(store.partition_path(partition), ignore_errors=True)
    key_index = getattr(store, "_key_index", None)
    if key_index is not None:
        key_index.clear()  # key -> partition hints: some pointed into the wiped database
    return True


def _no_auto_create_on_metadata() -> None:
    """The worker's clients never create a topic by asking for its metadata.

    aiokafka's metadata requests ask the broker to auto-create unknown topics. Every topic is
    created explicitly (``coursepulse topics``; Faust declares its changelogs), and a worker
    whose broker came back empty must not re-create topics with a broker's default partition
    count and fill them with its buffered records before it notices and exits (Apache Kafka
    in docker-compose has ``auto.create.topics.enable=false`` for the same reason).
    """
    from aiokafka.protocol import metadata

    cls = metadata.MetadataRequest
    if getattr(cls.__init__, "coursepulse_no_auto_create", False):
        return
    original = cls.__init__

    def init(self, topics=None, allow_auto_topic_creation=None):  # noqa: ANN001, ANN202 - aiokafka's
        original(self, topics, False if allow_auto_topic_creation is None else allow_auto_topic_creation)

    init.coursepulse_no_auto_create = True  # type: ignore[attr-defined]
    cls.__init__ = init

