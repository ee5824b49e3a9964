"""Process-wide counters, gauges and histograms, served as JSON (``/stats``) and in the Prometheus
text format (``/metrics``, through ``prometheus_client``).

Call sites use a small facade, cheap enough for the per-event path: ``metrics.inc(name, label)``,
``metrics.set(name, value, label)``, ``metrics.observe(name, value, label)``, ``metrics.get``.
Every name is declared once in :data:`CATALOGUE` with its type, HELP text and label names; a
label string fills the metric's labels in order, split on ``:`` (``"views:3"`` is
``topic="views", partition="3"``; ``:`` cannot occur in a Kafka topic name). Values live in plain
dicts; a collector in the worker's own :class:`~prometheus_client.CollectorRegistry` (not the
process-global one) turns them into metric families at scrape time, together with the figures
that are only read then (consumer lag, recovery, model quality: :meth:`Metrics.add_source`).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["CATALOGUE", "LATENCY_BUCKETS_S", "PREFIX", "Metrics", "Spec", "family_name", "metrics"]

log = logging.getLogger(__name__)
PREFIX = "coursepulse_"
#: upper bounds (seconds) of the event -> output latency histogram
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Spec(NamedTuple):
    """What a metric is: ``counter``, ``gauge`` or ``histogram``, its HELP text, its label names."""

    type: str
    help: str
    labels: tuple[str, ...] = ()


def _c(help_: str, *labels: str) -> Spec:
    return Spec("counter", help_, labels)


def _g(help_: str, *labels: str) -> Spec:
    return Spec("gauge", help_, labels)


#: every metric of the worker; a name used in code but missing here is still exported, with a
#: HELP saying so (tests/unit/test_metrics.py fails on it)
CATALOGUE: dict[str, Spec] = {
    # ingestion
    "events_in": _c("Input events applied to user state, by input topic.", "topic"),
    "duplicates": _c("Input events dropped as repeats of a recent event_id, by input topic.", "topic"),
    "dlq": _c("Records sent to the dead-letter topic, by rejection kind.", "kind"),
    "mispartitioned": _c("Input records found on a partition other than their key's (re-routed or dead-lettered), by topic.", "topic"),
    "rec_attributed": _c("Input events carrying a rec_id (came from one of our lists), by topic.", "topic"),
    "event_lag_ms": _g("Wall clock minus the event time of the latest event of the last batch, in ms."),
    "watermark_ms": _g("Event-time watermark of an owned input partition (largest event time less the allowed lateness), epoch ms.", "partition"),
    "event_output_latency_seconds": Spec(
        "histogram", "Seconds from an input record's Kafka timestamp to the acknowledgement of the batch that sent its outputs, by input topic.", ("topic",)),
    "records_sent": _c("Records this worker sent, by output or internal topic (logical name).", "topic"),
    # consumer position (read at scrape time)
    "consumer_lag": _g("Records not yet committed on an assigned partition: end offset minus committed offset.", "topic", "partition"),
    "consumer_end_offset": _g("End (high-water) offset of an assigned partition, as last fetched.", "topic", "partition"),
    "consumer_committed_offset": _g("Committed offset of an assigned partition (the next one to consume after a restart).", "topic", "partition"),
    "consumer_position": _g("Offset after the last record read from an assigned partition.", "topic", "partition"),
    "assigned_partitions": _g("Partitions of the input topics assigned to this worker."),
    # recovery (read at scrape time)
    "recovery_remaining": _g("Changelog records still to read before table recovery completes, by kind (active, standby).", "kind"),
    "recovery_completed": _g("1 once table recovery of the current assignment has completed, else 0."),
    "recovery_phantom_ends": _c("End offsets reported by the broker that no record reached (found by the end-offset probe)."),
    "recovery_short_ends": _c("Changelog partitions whose reported end the end-offset probe found short."),
    "recovery_probe_unconfirmed": _c("Changelog partitions the end-offset probe could not confirm at their end before its deadline."),
    "acks_held_back": _c("Acknowledgements of messages a stream skipped during a rebalance: not committable until processed."),
    "fresh_partition_seeks": _c("Partitions with no committed offset positioned by the reset policy after a rebalance."),
    "offset_gaps": _c("Input offset gaps found by the ingest agent: read again (healed) or found empty in the log (real).", "kind"),
    "changelog_ahead_rebuilt": _c("Local table stores found ahead of their changelog, wiped and rebuilt, by changelog topic.", "topic"),
    # outputs
    "profiles_published": _c("User profiles published, by lifecycle segment.", "segment"),
    "recommendations_published": _c("Recommendation lists published."),
    "recommendations_unchanged": _c("Lists ranked the same as the user's last published one, so not published (COURSEPULSE_REC_REPUBLISH_S)."),
    "churn_alerts": _c("Churn alerts published, by segment.", "segment"),
    "referral_candidates": _c("Referral candidates published, by incentive tier.", "incentive"),
    "referral_candidates_reowed": _c("Referral candidates sent again after a redelivered batch."),
    "rec_flush_at": _g("Wall-clock time (epoch s) lists were last sent to Redis."),
    # model quality
    "rec_click_through": _g("Views carrying a rec_id per recommendation list published (this worker)."),
    "rec_conversion": _g("Purchases carrying a rec_id per recommendation list published (this worker)."),
    "rec_discoveries": _c("Courses that entered a user's history between two of their lists (discoveries)."),
    "rec_discovery_hits": _c("Discoveries that were in the user's previous top-N list."),
    "rec_hit_rate": _g("Online HR@N: share of discoveries that were in the user's previous list (this worker, since start)."),
    "churn_model_auc": _g("Online ROC AUC of the churn model on its resolved (delayed) labels, by partition.", "partition"),
    "churn_model_labels": _g("Resolved churn labels the partition's model learned from.", "partition"),
    "churn_drift_count": _g("Drifts detected (ADWIN) in the churn model's error stream, by partition.", "partition"),
    "referral_model_auc": _g("Rolling ROC AUC of the referral model on its resolved labels, by partition.", "partition"),
    "referral_model_examples": _g("Resolved referral labels the partition's model learned from.", "partition"),
    "model_restores": _c("Partition models loaded from their table, by model and outcome.", "model", "outcome"),
    "retention_checkpoints": _c("Retention model checkpoints written to their table."),
    # similarity
    "cooc_bundles_sent": _c("Co-occurrence messages sent to course-cooc (one per owning partition and batch)."),
    "cooc_updates_sent": _c("Co-occurrence row updates sent."),
    "cooc_updates_applied": _c("Co-occurrence row updates applied to owned course rows."),
    "cooc_malformed": _c("Malformed course-cooc messages skipped."),
    "neighbour_lists_published": _c("Course neighbour lists published to course-neighbours."),
    "churn_params_sent": _c("Churn classifier parameters this worker's partitions published on churn-model."),
    "churn_params_received": _c("Churn classifier parameters read from churn-model (a partition's are kept in this worker's merge unless it holds some of more labels: its own are there before they come back)."),
    "neighbour_lists_received": _c("Course neighbour lists read into this worker's index."),
    "catalogue_updates": _c("Catalogue (courses) records read into this worker's index."),
    "catalogue_size": _g("Courses in this worker's neighbour index."),
    "broadcast_rejected": _c("Broadcast records (courses, neighbours) that could not be applied, by topic.", "topic"),
    # referrals
    "referral_links_sent": _c("Shares and referred purchases sent to referral-links, by kind.", "kind"),
    "referral_links_in": _c("referral-links records read, by kind.", "kind"),
    "referral_links_malformed": _c("Malformed referral-links records skipped."),
    "referral_duplicates": _c("Referral records dropped as repeats, by kind.", "kind"),
    "referral_unknown": _c("Referred purchases whose share was not seen yet (they wait for it)."),
    "referral_self": _c("Purchases referred by the buyer's own share (not credited)."),
    "referral_pending_dropped": _c("Waiting referred purchases dropped (bounded memory)."),
    "referral_credited": _c("Referred purchases credited to their sharer, by when the match was made.", "kind"),
    "referral_outside_window": _c("Referred purchases outside the attribution window (not credited)."),
    "referral_credits_applied": _c("Referral credits applied to sharers, by outcome.", "outcome"),
    "referral_credits_malformed": _c("Malformed referral-credits records skipped."),
    "referral_partition_mismatch": _c("Referral credits that arrived on a partition not owning their sharer."),
    "referral_course_shares": _g("Shares of a course seen by this worker's referral book.", "course"),
    "referral_course_conversions": _g("Credited conversions of a course's shares.", "course"),
    "referral_course_revenue": _g("Revenue of a course's credited conversions.", "course"),
    # Redis serving copy
    "redis_writes": _c("Values written to Redis, by kind (profile, rec).", "kind"),
    "redis_errors": _c("Failed Redis writes (the values are kept as owed)."),
    "redis_skipped": _c("Writes only recorded as owed while Redis is in its back-off pause."),
    "redis_retried": _c("Owed values written to Redis on a retry."),
    "redis_behind": _g("Values owed to Redis (latest per key), waiting for it to answer."),
    "redis_resync_needed": _g("1 while Redis must be rebuilt from the output topics (owed values dropped or Redis lost its data)."),
    "redis_resync_marked": _c("Times a re-sync of Redis was found needed."),
    "redis_resyncs": _c("Re-syncs of Redis from the output topics completed."),
    "redis_resync_keys": _c("Keys written to Redis by re-syncs."),
    "redis_resync_failed": _c("Re-syncs of Redis that failed (retried later)."),
    # the process
    "broker_ok": _g("1 while the broker answers and the changelog topics exist, else 0."),
    "send_failures": _c("Records Faust sent (changelog writes, Topic.send) that the broker did not take; the next commit fails and the worker restarts."),
    "send_holds": _c("Times a broken broker connection held the producer's requests until the changelog ends were checked again."),
    "broker_short_end_reports": _c("Changelog ends reported below one seen before whose records a fetch found all there (not a loss)."),
    "gc_collections": _c("Garbage-collector runs, by generation.", "generation"),
    "gc_pause_ms_total": _c("Milliseconds spent in garbage-collector pauses, by generation.", "generation"),
    "gc_pause_max_ms": _g("Longest garbage-collector pause seen, ms, by generation.", "generation"),
    "loop_lag_ms_total": _c("Milliseconds a 20 ms timer woke late, summed (the event loop was held)."),
    "loop_lag_max_ms": _g("Longest a 20 ms timer woke late in the last 10 s, ms."),
    "uptime_seconds": _g("Seconds since the worker's metrics were created."),
}

def family_name(name: str) -> str:
    """The Prometheus family of a catalogue name (a counter's family has no ``_total``; its
    sample does)."""
    spec = CATALOGUE.get(name)
    if spec is not None and spec.type == "counter" and name.endswith("_total"):
        name = name[: -len("_total")]
    return PREFIX + name


_UNDECLARED_HELP = "Not declared in streams.metrics.CATALOGUE."
#: a scrape-time source: returns ``(name, label, value)`` triples of gauges
Source = Callable[[], Iterable[tuple[str, str, float]]]


class _Histogram:
    """Bucket counts, sum and count of one labelled histogram series."""

    __slots__ = ("counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * (n + 1)  # the last one is +Inf
        self.sum = 0.0

    def quantile(self, bounds: tuple[float, ...], q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (None: no observation)."""
        total = sum(self.counts)
        if not total:
            return None
        seen = 0
        for bound, n in zip((*bounds, float("inf")), self.counts, strict=True):
            seen += n
            if seen >= q * total:
                return bound
        return float("inf")  # pragma: no cover


class Metrics:
    """Counters and gauges (with a label string), histograms and scrape-time sources."""

    def __init__(self, catalogue: dict[str, Spec] | None = None,
                 buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.started = time.time()
        self.catalogue = CATALOGUE if catalogue is None else catalogue
        self.counters: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.gauges: dict[tuple[str, str], float] = {}
        self.histograms: dict[tuple[str, str], _Histogram] = {}
        self.buckets = buckets
        self.sources: list[Source] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    # -- the facade ----------------------------------------------------------------------------

    def inc(self, name: str, label: str = "", by: float = 1.0) -> None:
        self.counters[(name, label)] += by

    def set(self, name: str, value: float, label: str = "") -> None:
        self.gauges[(name, label)] = value

    def observe(self, name: str, value: float, label: str = "") -> None:
        """One observation of a histogram (e.g. a latency in seconds)."""
        h = self.histograms.get((name, label))
        if h is None:
            h = self.histograms[(name, label)] = _Histogram(len(self.buckets))
        h.counts[bisect.bisect_left(self.buckets, value)] += 1
        h.sum += value

    def get(self, name: str, label: str = "") -> float:
        return self.counters.get((name, label), self.gauges.get((name, label), 0.0))

    def add_source(self, source: Source) -> None:
        """Gauges read only when scraped (``/metrics``, ``/stats``): ``source()`` gives
        ``(name, label, value)`` triples. A source that fails is logged and skipped."""
        self.sources.append(source)

    # -- exposition ----------------------------------------------------------------------------

    def sourced(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for source in self.sources:
            try:
                for name, label, value in source():
                    out[(name, label)] = float(value)
            except Exception:  # noqa: BLE001 - a broken source must not break the scrape
                log.exception("metrics source %r failed", source)
        return out

    def snapshot(self) -> dict[str, Any]:
        """All figures as nested JSON: ``{name: value}`` or ``{name: {label: value}}``;
        a histogram as ``{label: {count, sum, p50, p95, p99}}`` (quantiles as bucket bounds)."""
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started, 3)}
        gauges = {**self.gauges, **self.sourced()}
        pairs = [*self.counters.items(), *gauges.items()]
        labelled = {name for (name, label), _ in pairs if label}
        for (name, label), value in pairs:
            if name in labelled:  # a name used with labels: the unlabelled value is under ""
                out.setdefault(name, {})[label] = value
            else:
                out[name] = value
        for (name, label), h in list(self.histograms.items()):
            count = sum(h.counts)
            out.setdefault(name, {})[label] = {
                "count": count, "sum": round(h.sum, 6),
                **{f"p{int(q * 100)}": h.quantile(self.buckets, q) for q in (0.5, 0.95, 0.99)},
            }
        return out

    def prometheus(self) -> str:
        """The Prometheus text exposition format of every family (each with HELP and TYPE)."""
        return generate_latest(self.registry).decode()

    def spec(self, name: str, label: str = "") -> Spec:
        spec = self.catalogue.get(name)
        if spec is not None:
            return spec
        kind = "histogram" if any(n == name for n, _ in self.histograms) else (
            "counter" if any(n == name for n, _ in self.counters) else "gauge")
        return Spec(kind, _UNDECLARED_HELP, ("label",) if label else ())


def _label_values(spec: Spec, label: str) -> list[str]:
    n = len(spec.labels)
    if not n:
        return []
    parts = label.split(":", n - 1) if n > 1 else [label]
    return parts + [""] * (n - len(parts))


class _Collector:
    """Metric families of a :class:`Metrics`, built at scrape time."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        families: dict[str, Metric] = {}

        def family(name: str, label: str) -> tuple[Metric, Spec]:
            spec = m.spec(name, label)
            fam = families.get(name)
            if fam is None:
                cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
                       "histogram": HistogramMetricFamily}[spec.type]
                fam = families[name] = cls(PREFIX + name, spec.help, labels=spec.labels)
            return fam, spec

        for name, spec in m.catalogue.items():  # every declared family, unlabelled ones at 0
            fam, _ = family(name, "")
            if not spec.labels and spec.type != "histogram":
                fam.add_metric([], 0.0)
        gauges = {**m.gauges, **m.sourced(), ("uptime_seconds", ""): time.time() - m.started}
        for store in (m.counters, gauges):
            for (name, label), value in list(store.items()):
                fam, spec = family(name, label)
                values = _label_values(spec, label)
                if not spec.labels:  # replace the declared 0
                    fam.samples[:] = [s for s in fam.samples if s.labels]
                fam.add_metric(values, float(value))
        bounds = [*(str(b) for b in m.buckets), "+Inf"]
        for (name, label), h in list(m.histograms.items()):
            fam, spec = family(name, label)
            cumulative, buckets = 0, []
            for bound, n in zip(bounds, h.counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            fam.add_metric(_label_values(spec, label), buckets, h.sum)
        yield from families.values()


#: the worker's registry
metrics = Metrics()
