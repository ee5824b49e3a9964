"""What the worker shows its operator, gathered without touching the processing code.

* :class:`OpsSensor`, a Faust sensor: the event -> output latency of every input record (its
  Kafka timestamp to the acknowledgement of the batch that sent its outputs: Faust acks a
  ``take_events`` batch after its body has sent everything), the records sent per topic, the
  latest dead letters and churn alerts this worker sent (for the operator page), and the online
  HR@N of the lists it sends (from the users' state writes and the lists themselves).
* scrape-time sources of :class:`~streams.metrics.Metrics`: per-partition consumer lag and
  position, table recovery progress, and the online quality of the partitions' models.
* :class:`OnlineHitRate`: online HR@N of published lists against later discoveries.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
from faust.sensors import Sensor

from streams.metrics import Metrics

__all__ = ["OnlineHitRate", "OpsSensor", "consumer_source", "consumer_state", "partition_rows", "quality_source", "recovery_source"]

INPUTS = ("views", "purchases", "shares")


class OpsSensor(Sensor):
    """Latency of input records, records sent per topic, the latest dead letters and alerts."""

    #: users whose state was written and whose list is not sent yet, at most (then forgotten)
    MAX_WRITTEN = 100_000

    def __init__(self, metrics: Metrics, topic_prefix: str = "", recent: int = 50,
                 hit_rate: OnlineHitRate | None = None, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(**kwargs)
        self.metrics = metrics
        self.prefix = topic_prefix
        self.inputs = {topic_prefix + t: t for t in INPUTS}
        #: (wall time s, value bytes) of the latest records sent to events-dlq / churn-alerts
        self.recent: dict[str, deque[tuple[float, bytes]]] = {
            "events-dlq": deque(maxlen=recent), "churn-alerts": deque(maxlen=recent)}
        self.hit_rate = OnlineHitRate() if hit_rate is None else hit_rate
        #: user -> the courses of their history, from the state write before their list
        self._written: dict[str, tuple[str, ...]] = {}

    def logical(self, topic: str) -> str:
        """A topic's name without the deployment's topic prefix."""
        return topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:  # noqa: ANN401
        """An input record acknowledged (its batch's outputs sent): its latency."""
        logical = self.inputs.get(tp.topic)
        if logical is not None and message.timestamp:
            self.metrics.observe("event_output_latency_seconds", max(0.0, time.time() - message.timestamp), logical)

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:  # noqa: ANN401
        """A user's state written: keep their history until their list is sent."""
        if getattr(table, "name", None) == "users" and value:
            try:  # the table keeps a state as its JSON bytes (UserState.to_bytes)
                courses = value.get("courses") if isinstance(value, dict) else orjson.loads(value).get("courses")
            except (orjson.JSONDecodeError, TypeError, AttributeError):
                return
            if isinstance(courses, dict):
                if len(self._written) >= self.MAX_WRITTEN:
                    self._written.clear()
                self._written[str(key)] = tuple(courses)

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:  # noqa: ANN401
        """A record about to be sent: counted by topic; dead letters, alerts and lists looked at."""
        logical = self.logical(topic)
        self.metrics.inc("records_sent", logical)
        value = message.value
        if not isinstance(value, bytes | bytearray):
            return None
        recent = self.recent.get(logical)
        if recent is not None:
            recent.append((time.time(), bytes(value)))
        elif logical == "recommendations":
            self.on_list(value)
        return None

    def on_list(self, value: bytes) -> None:
        """A recommendation list sent: resolve the discoveries since the user's previous one."""
        try:
            record = orjson.loads(value)
            user_id = record["user_id"]
            listed = [item["course_id"] for item in record["items"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        found, hits = self.hit_rate.observe(user_id, self._written.pop(user_id, None), listed)
        if found:
            self.metrics.inc("rec_discoveries", by=found)
            self.metrics.inc("rec_discovery_hits", by=hits)
            self.metrics.set("rec_hit_rate", round(self.hit_rate.hits / self.hit_rate.discoveries, 6))

    def latest(self, logical: str, n: int = 20) -> list[dict[str, Any]]:
        """The latest records sent to ``logical`` (newest first), decoded; a dead letter's
        original bytes are shown as text (first 300 characters) only."""
        out: list[dict[str, Any]] = []
        for at, value in reversed(list(self.recent.get(logical, ()))):
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError:
                record = {"value": value[:300].decode("utf-8", "replace")}
            if isinstance(record, dict) and "original_b64" in record:
                record.pop("original_b64", None)
                text = record.get("original_text")
                if isinstance(text, str) and len(text) > 300:
                    record["original_text"] = text[:300] + "…"
            out.append({"sent_at": round(at, 3), "record": record})
            if len(out) >= n:
                break
        return out


def partition_rows(app: Any) -> tuple[Any, list[dict[str, Any]]]:  # noqa: ANN401 - a faust App
    """The one reader of the consumer's internals: per assigned partition (topic order) whether it
    is active (fetched), paused or buffered (held back while its stream's queue is full), whether
    aiokafka pauses its fetch, Faust's view of its end, committed and last read offsets, and
    aiokafka's position and highwater. Returns ``(consumer, rows)``; ``(None, [])`` before the
    consumer started. Faust keeps no public view of these, hence the private attributes."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return None, []
    try:
        assigned = sorted(consumer.assignment())
    except Exception:  # noqa: BLE001 - not started, or closing
        return None, []
    from streams.continuity import continuity

    active = set(getattr(consumer, "_active_partitions", None) or ())
    paused = set(getattr(consumer, "_paused_partitions", ()) or ())
    buffered = set(getattr(consumer, "_buffered_partitions", ()) or ())
    committed_of = getattr(consumer, "_committed_offset", {})
    read_of = getattr(consumer, "_read_offset", {})
    thread = getattr(consumer, "_thread", None)
    inner = getattr(thread, "_consumer", None) if thread is not None else None
    aio_paused: set[tuple[str, int]] = set()
    if inner is not None:
        with contextlib.suppress(Exception):
            aio_paused = {(tp.topic, tp.partition) for tp in inner.paused()}
    rows = []
    for tp in assigned:
        try:
            end = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - no fetch yet
            end = None
        row: dict[str, Any] = {
            "topic": tp.topic, "partition": tp.partition, "active": tp in active,
            "paused": tp in paused, "buffered": tp in buffered,
            "fetch_paused": (tp.topic, tp.partition) in aio_paused,
            "expected": continuity.expected.get((tp.topic, tp.partition)),
            "end": end if end is not None and end >= 0 else None,
            "committed": committed_of.get(tp), "last_read": read_of.get(tp),
        }
        if inner is not None:
            from aiokafka import TopicPartition

            atp = TopicPartition(tp.topic, tp.partition)
            with contextlib.suppress(Exception):
                row["highwater"] = inner.highwater(atp)
                row["position"] = inner._subscription.subscription.assignment.state_value(atp).position  # noqa: SLF001
        rows.append(row)
    return consumer, rows


def consumer_state(app: Any) -> dict[str, Any]:  # noqa: ANN401 - a faust App
    """``/consumer``: :func:`partition_rows` with the consumer's flow state. A partition assigned
    but neither active nor paused is one nobody fetches."""
    consumer, rows = partition_rows(app)
    if consumer is None:
        return {"assigned": []}
    return {"assigned": rows, "flow_active": bool(getattr(consumer, "flow_active", True)),
            "flow_control_active": app.flow_control.is_active(),
            "generation": getattr(app, "consumer_generation_id", None),
            "in_recovery": bool(getattr(app, "in_recovery", False))}


def consumer_source(app: Any, topic_prefix: str = "") -> Any:  # noqa: ANN401
    """Per assigned partition: end offset, committed offset, position and lag (end - committed,
    where the group commits: not for changelogs), from :func:`partition_rows`."""

    def read() -> Iterator[tuple[str, str, float]]:
        consumer, rows = partition_rows(app)
        if consumer is None:
            return
        inputs = {topic_prefix + t for t in INPUTS}
        n_inputs = 0
        for row in rows:
            full = row["topic"]
            topic = full[len(topic_prefix):] if topic_prefix and full.startswith(topic_prefix) else full
            label = f"{topic}:{row['partition']}"
            n_inputs += full in inputs
            end, committed, last_read = row["end"], row["committed"], row["last_read"]
            if end is not None:
                yield "consumer_end_offset", label, end
            if committed is not None:  # none for a changelog (read, never committed)
                yield "consumer_committed_offset", label, committed
                if end is not None:
                    yield "consumer_lag", label, max(0, end - committed)
            if last_read is not None:
                yield "consumer_position", label, last_read + 1
        yield "assigned_partitions", "", n_inputs

    return read


def recovery_source(app: Any) -> Any:  # noqa: ANN401
    """Changelog records left to recover (active, standby) and whether recovery completed."""

    def read() -> Iterator[tuple[str, str, float]]:
        recovery = app.tables.recovery
        yield "recovery_completed", "", 1.0 if recovery.completed.is_set() and not recovery.in_recovery else 0.0
        yield "recovery_remaining", "active", max(0, recovery.active_remaining_total())
        yield "recovery_remaining", "standby", max(0, recovery.standby_remaining_total())

    return read


def _both_classes(metric: Any) -> bool:  # noqa: ANN401 - a River ROCAUC
    """Whether a River ``ROCAUC`` has seen both labels (before that its value means nothing)."""
    cms = getattr(metric, "cms", None)
    if not cms:
        return False
    rows = cms[0].sum_row
    return rows.get(True, 0) > 0 and rows.get(False, 0) > 0


def quality_source(retention: Callable[[], Mapping[int, Any]]) -> Any:  # noqa: ANN401
    """Online churn AUC on resolved labels (once both outcomes were seen) and the labels
    learned, per owned partition; ``retention()`` gives partition -> its retention models."""

    def read() -> Iterator[tuple[str, str, float]]:
        for partition, rm in list(retention().items()):
            churn = rm.churn
            yield "churn_model_labels", str(partition), churn.n_learned
            if _both_classes(churn.metric):
                yield "churn_model_auc", str(partition), float(churn.metric.get())

    return read


class OnlineHitRate:
    """HR@N online: a *discovery* is a course that entered a user's history between two of their
    lists; it is a hit when it was in the previous list (the ranker never lists a course the user
    already touched). What ``coursepulse eval`` measures offline, here on this worker's users
    since it started; the last list of at most ``max_users`` users is remembered (LRU)."""

    def __init__(self, max_users: int = 50_000) -> None:
        if max_users < 1:
            msg = f"max_users must be >= 1, got {max_users}"
            raise ValueError(msg)
        self.max_users = max_users
        self.discoveries = 0
        self.hits = 0
        #: user -> (their last list, their history then): tuples of interned ids (a few hundred
        #: bytes per user; sets would be several times that)
        self._last: OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]] = OrderedDict()

    def observe(self, user_id: str, known: Iterable[str] | None, listed: Sequence[str]) -> tuple[int, int]:
        """A list published for ``user_id``, whose history now holds ``known`` (None: unchanged
        since their previous list); returns the (discoveries, hits) it resolved."""
        prev = self._last.pop(user_id, None)
        if known is None:
            if prev is None:  # neither the history nor a previous list: nothing to hold it against
                return 0, 0
            known_now = prev[1]
        else:
            known_now = tuple(sys.intern(c) for c in known)
        found = hit = 0
        if prev is not None:
            prev_list, prev_known = prev
            new = set(known_now).difference(prev_known)
            found, hit = len(new), sum(1 for c in prev_list if c in new)
            self.discoveries += found
            self.hits += hit
        self._last[user_id] = (tuple(sys.intern(c) for c in listed), known_now)
        if len(self._last) > self.max_users:
            self._last.popitem(last=False)
        return found, hit

    @property
    def rate(self) -> float | None:
        """Hits per discovery so far (None before the first discovery)."""
        return self.hits / self.discoveries if self.discoveries else None
