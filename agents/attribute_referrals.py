"""Attribute invitees' purchases to the shares that brought them, across partitions.

A sharer and their invitee usually live on different partitions. The ingest agent sends both
halves to ``referral-links`` keyed by ``share_id`` (``streams.publish.send_link``): the share from the
sharer's partition, the purchase naming it from the invitee's. They meet in the ``shares``
table on the partition of the share id, in whatever order they arrive
(:class:`models.referrals.AttributionBook`): a conversion within ``COURSEPULSE_ATTRIBUTION_DAYS``
of its share is credited; one naming an unknown share waits for it (``referral_unknown``); one
outside the window is counted (``referral_outside_window``). Every settled conversion goes to
``referral-credits`` keyed by the sharer, i.e. back to the sharer's partition
(``agents/score_referrals.py``). Per-course totals live in ``referral-courses`` and are exposed
as gauges.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from models.referrals import Attribution, AttributionBook, course_stats_add
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.partitions import registry

__all__ = ["attribute_referrals", "course_totals"]

log = logging.getLogger(__name__)
_book = AttributionBook(tables.shares, window_days=settings.attribution_days)


def course_totals(course_id: str) -> dict[str, Any]:
    """A course's referral totals over this worker's partitions."""
    out = course_stats_add(None)
    for totals in registry.all_course_totals():
        entry = totals.get(course_id)
        if entry:
            out = course_stats_add(out, entry["shares"], entry["conversions"], entry["revenue"])
    return out


def _count(partition: int, result: Attribution) -> None:
    kind = result.kind
    metrics.inc("referral_links_in", kind)
    if result.duplicate:
        metrics.inc("referral_duplicates", kind)
    if result.unknown:
        metrics.inc("referral_unknown")
    if result.self_referral:
        metrics.inc("referral_self")
    if result.dropped:
        metrics.inc("referral_pending_dropped", by=result.dropped)
        log.warning("share %s: %d pending conversions dropped (too many wait for it)", result.share_id, result.dropped)
    if result.credited:
        metrics.inc("referral_credited", "late_share" if kind == "share" else "on_purchase", by=result.credited)
    if result.outside_window:
        metrics.inc("referral_outside_window", by=result.outside_window)
    if result.course_id is not None and (result.new_share or result.credited):
        course = result.course_id
        key = f"{partition}/{course}"
        entry = course_stats_add(tables.referral_courses.get(key), int(result.new_share), result.credited,
                                 result.credited_revenue)
        tables.referral_courses[key] = entry
        registry.course_totals(partition)[course] = entry
        totals = course_totals(course)
        metrics.set("referral_course_shares", totals["shares"], course)
        metrics.set("referral_course_conversions", totals["conversions"], course)
        metrics.set("referral_course_revenue", totals["revenue"], course)


@app.agent(topics.referral_links)
async def attribute_referrals(stream):  # noqa: ANN001 - faust stream
    """Per link: fold it into the share's entry; send the credits it settles to the sharers."""
    async for event in stream.events():
        message = event.message
        try:
            result = _book.apply(orjson.loads(message.value))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:  # our own topic: a bug, not input
            log.error("dropping malformed referral link at %s[%d]@%d: %s", message.topic, message.partition,
                      message.offset, exc)
            metrics.inc("referral_links_malformed")
            continue
        _count(message.partition, result)
        for credit in result.credits:
            await topics.referral_credits.send(key=credit["sharer"].encode(), value=orjson.dumps(credit))
