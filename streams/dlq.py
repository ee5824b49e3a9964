"""``coursepulse dlq list`` and ``coursepulse dlq redrive``: read dead letters, re-send them.

A dead letter (``events-dlq``, :func:`schemas.codec.dead_letter`) holds the original key and
bytes (base64), the source topic, partition and offset, the error and its kind. Re-driving sends
the original bytes to the source topic again, keyed by the original key (or, with ``--fix-key``,
by the ``user_id`` in the payload, for a producer that keyed records wrongly), partitioned by
Kafka's default partitioner (murmur2: the partition that owns the key, whatever partition the
record first came on). It is idempotent: every input event carries an ``event_id`` and the
worker drops a repeat of one of a user's recent events (``COURSEPULSE_DEDUPE_WINDOW``), so
re-driving the same dead letters twice changes nothing the second time. A record that is still
bad is dead-lettered again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import orjson

from streams.kafka_auth import aiokafka_kwargs
from streams.settings import Settings

__all__ = ["DeadLetterRecord", "parse_since", "read_dead_letters", "redrive", "redrive_plan", "run_dlq"]

log = logging.getLogger(__name__)
#: longest wait for one fetch of events-dlq
_IDLE_S = 0.5
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class DeadLetterRecord:
    """One record of ``events-dlq``: where it is, and what it holds."""

    dlq_partition: int
    dlq_offset: int
    value: dict[str, Any]

    @property
    def kind(self) -> str:
        """The rejection kind (``error_kind``)."""
        return str(self.value.get("error_kind", ""))

    @property
    def failed_at(self) -> int:
        """When the record was dead-lettered, epoch ms."""
        return int(self.value.get("failed_at") or 0)

    @property
    def original(self) -> bytes:
        """The original value, byte for byte."""
        return base64.b64decode(self.value.get("original_b64") or "")

    @property
    def key(self) -> bytes | None:
        """The original message key (None: the record had none)."""
        raw = self.value.get("key_b64")
        return None if raw is None else base64.b64decode(raw)


def parse_since(text: str, now_ms: int | None = None) -> int:
    """Epoch ms from ``30m`` / ``2h`` / ``1d`` (ago), epoch ms digits, or ISO-8601 with an offset.

    >>> parse_since("2026-01-01T00:00:00+00:00")
    1767225600000
    >>> parse_since("1h", now_ms=7_200_000)
    3600000
    """
    text = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if text[:-1].replace(".", "", 1).isdigit() and text[-1:] in _UNITS:
        return now - int(float(text[:-1]) * _UNITS[text[-1]] * 1000)
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"--since: expected 30m, 2h, 1d, epoch ms or ISO-8601 with an offset, got {text!r}"
        raise ValueError(msg) from None
    if parsed.tzinfo is None:
        msg = f"--since: ISO-8601 time without an offset: {text!r}"
        raise ValueError(msg)
    return int(parsed.timestamp() * 1000)


async def read_dead_letters(settings: Settings, kinds: Iterable[str] = (), since_ms: int | None = None,
                            timeout_s: float = 120.0) -> list[DeadLetterRecord]:
    """Every dead letter (from the beginning of ``events-dlq`` to its end), filtered."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    wanted = set(kinds)
    topic = settings.topic("events-dlq")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings),
                                group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[DeadLetterRecord] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - a fresh client knows no topic yet
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # to the end as of now: up to the reported ends, then one more fetch (Tansu reports an
        # end one batch short; records written meanwhile may come too)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        reached = False
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(_IDLE_S * 1000))
            for tp, records in batch.items():
                for rec in records:
                    d = _decoded(tp.partition, rec)
                    if d is None or (wanted and d.kind not in wanted) or (since_ms is not None and d.failed_at < since_ms):
                        continue
                    out.append(d)
            if reached:
                break
            positions = [await consumer.position(tp) for tp in tps]
            reached = all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True))
    finally:
        await consumer.stop()
    out.sort(key=lambda d: (d.failed_at, d.dlq_partition, d.dlq_offset))
    return out


def _decoded(partition: int, rec: Any) -> DeadLetterRecord | None:  # noqa: ANN401 - aiokafka record
    try:
        value = orjson.loads(rec.value)
    except orjson.JSONDecodeError:
        log.warning("events-dlq[%d]@%d is not JSON; skipped", partition, rec.offset)
        return None
    return DeadLetterRecord(partition, rec.offset, value) if isinstance(value, dict) else None


def redrive_plan(d: DeadLetterRecord, fix_key: bool) -> tuple[str, bytes | None, bytes] | str:
    """``(topic, key, value)`` to re-send for a dead letter, or why it cannot be re-sent."""
    topic = d.value.get("source_topic")
    if not topic:
        return "no source topic"
    value = d.original
    key = d.key
    if fix_key:
        try:
            payload = orjson.loads(value)
        except orjson.JSONDecodeError:
            return "--fix-key: the original is not JSON"
        user_id = payload.get("user_id") if isinstance(payload, dict) else None
        if not isinstance(user_id, str) or not user_id:
            return "--fix-key: the original has no user_id"
        key = user_id.encode()
    return str(topic), key, value


async def redrive(settings: Settings, letters: list[DeadLetterRecord], *, fix_key: bool = False,
                  dry_run: bool = False, progress: bool = True) -> Counter[str]:
    """Re-send ``letters`` to their source topics; counts ``sent``, ``skipped:<why>`` and, with
    ``dry_run``, ``would_send`` (nothing is sent)."""
    from aiokafka import AIOKafkaProducer

    counts: Counter[str] = Counter()
    plans = []
    for d in letters:
        plan = redrive_plan(d, fix_key)
        if isinstance(plan, str):
            counts[f"skipped:{plan}"] += 1
        else:
            plans.append(plan)
    if dry_run:
        counts["would_send"] = len(plans)
        return counts
    if not plans:
        return counts
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **aiokafka_kwargs(settings),
                                linger_ms=5, max_request_size=4_194_304)
    await producer.start()
    try:
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("redrive"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"), TimeElapsedColumn())
            with Progress(*columns, transient=False) as bar:
                task = bar.add_task("redrive", total=len(plans))
                await _send_all(producer, plans, counts, lambda n: bar.update(task, completed=n))
        else:
            await _send_all(producer, plans, counts, lambda n: None)
        await producer.flush()
    finally:
        await producer.stop()
    return counts


async def _send_all(producer: Any, plans: list[tuple[str, bytes | None, bytes]], counts: Counter[str],  # noqa: ANN401
                    advance: Any) -> None:  # noqa: ANN401
    futures = []
    for n, (topic, key, value) in enumerate(plans, 1):
        futures.append(await producer.send(topic, key=key, value=value))  # murmur2 of the key picks the partition
        if n % 200 == 0 or n == len(plans):
            advance(n)
    for fut in futures:
        await fut
        counts["sent"] += 1


def _print_list(letters: list[DeadLetterRecord], out: TextIO, as_json: bool) -> None:
    if as_json:
        for d in letters:
            out.write(orjson.dumps({"dlq_partition": d.dlq_partition, "dlq_offset": d.dlq_offset, **d.value}).decode() + "\n")
        return
    kinds = Counter(d.kind for d in letters)
    for d in letters:
        at = datetime.fromtimestamp(d.failed_at / 1000).astimezone().isoformat(timespec="seconds")
        text = d.value.get("original_text")
        shown = (text[:80] if isinstance(text, str) else "(binary)").replace("\n", " ")
        out.write(f"{at}  {d.kind:<15} {d.value.get('source_topic')}[{d.value.get('partition')}]@{d.value.get('offset')}  "
                  f"{str(d.value.get('error', ''))[:100]}  {shown}\n")
    out.write(f"{len(letters)} dead letters" + (f": {dict(sorted(kinds.items()))}" if kinds else "") + "\n")


def run_dlq(args: Any, out: TextIO = sys.stdout) -> int:  # noqa: ANN401
    """``coursepulse dlq list|redrive`` against the broker of ``KAFKA_BROKER``."""
    settings = Settings.from_env()
    if not settings.kafka_broker:
        print("KAFKA_BROKER is not set: the dead letters are on the broker the workers use", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    letters = asyncio.run(read_dead_letters(settings, args.kind or (), since))
    if args.dlq_command == "list":
        _print_list(letters, out, args.json)
        return 0
    counts = asyncio.run(redrive(settings, letters, fix_key=args.fix_key, dry_run=args.dry_run,
                                 progress=not args.no_progress and out.isatty()))
    verb = "would re-send" if args.dry_run else "re-sent"
    n = counts["would_send"] if args.dry_run else counts["sent"]
    skipped = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("skipped:")}
    out.write(f"{verb} {n} of {len(letters)} dead letters" + (f"; skipped {skipped}" if skipped else "") + "\n")
    if args.json:
        out.write(orjson.dumps({"matched": len(letters), "sent": counts["sent"], "would_send": counts["would_send"],
                                "skipped": skipped, "dry_run": args.dry_run}).decode() + "\n")
    return 0
