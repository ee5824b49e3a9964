"""The worker's HTTP endpoints: the operator page, health, metrics, and reads of the serving copies."""

from __future__ import annotations

import orjson
from faust.web import Request, Response, View

from streams import partitions as _partitions
from streams.app import app, settings
from streams.health import BrokerWatch, readiness
from streams.metrics import metrics
from streams.observe import (
    OpsSensor,
    consumer_source,
    consumer_state,
    quality_source,
    recovery_source,
)
from streams.operator_page import PAGE
from streams.providers import lookup
from streams.runtime import index, serving

__all__ = ["ChurnView", "HealthView", "LiveView", "MetricsView", "OperatorView", "ReadyView", "RecentView", "NeighboursView",
           "ProfileView", "RecommendationsView", "StatsView", "ops_sensor", "watch"]

#: latency of input records, records sent per topic, the latest dead letters and alerts, HR@N
ops_sensor = OpsSensor(metrics, settings.topic_prefix)
app.sensors.add(ops_sensor)
metrics.add_source(consumer_source(app, settings.topic_prefix))
metrics.add_source(recovery_source(app))
# partition -> retention models, read at scrape time (tests/integration/test_operations.py fails
# when none are found on a worker that processes events)
metrics.add_source(quality_source(lambda: _partitions.registry.loaded_retention()))


def _json(web, body: object, status: int = 200) -> Response:  # noqa: ANN001
    return web.bytes(orjson.dumps(body), content_type="application/json", status=status)


async def _served(web, kind: str, ident: str, what: str) -> Response:  # noqa: ANN001
    """A serving copy from Redis as JSON, or 404 when there is none (or Redis is away)."""
    value = await serving.get(kind, ident)
    if value is None:
        return _json(web, {"error": f"no {what} for {ident!r}"}, status=404)
    return web.bytes(value, content_type="application/json")


@app.page("/")
class OperatorView(View):
    """The operator page: plain HTML whose inline script polls this worker's JSON endpoints."""

    async def get(self, request: Request) -> Response:
        return self.web.bytes(PAGE, headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


@app.page("/ops/recent")
class RecentView(View):
    """The latest dead letters and churn alerts this worker sent (newest first)."""

    async def get(self, request: Request) -> Response:
        n = min(50, max(1, int(request.query.get("n", "20")) if request.query.get("n", "20").isdigit() else 20))
        return _json(self.web, {"dlq": ops_sensor.latest("events-dlq", n), "alerts": ops_sensor.latest("churn-alerts", n),
                                "app_id": settings.app_id, "topic_prefix": settings.topic_prefix})


@app.page("/healthz")
class HealthView(View):
    """200 while the worker runs (Faust's own crash handling stops the process otherwise)."""

    async def get(self, request: Request) -> Response:
        return _json(self.web, {"status": "ok", "uptime_s": metrics.snapshot()["uptime_s"]})


#: the broker and changelog watch behind /readyz (and the exit on broker loss)
watch = BrokerWatch(app, settings)
watch.hold_sends()  # before the app's clients connect: their connections report breaks to the gate


@app.task
async def _watch_broker() -> None:
    await watch.run()


@app.page("/livez")
class LiveView(View):
    """200 while the worker's event loop answers (restart it when this fails)."""

    async def get(self, request: Request) -> Response:
        return _json(self.web, {"status": "ok", "uptime_s": metrics.snapshot()["uptime_s"]})


@app.page("/readyz")
class ReadyView(View):
    """200 when partitions are assigned, table recovery has completed and the broker answers;
    503 with the reasons otherwise."""

    async def get(self, request: Request) -> Response:
        ready, reasons = readiness(app, watch)
        body = {"ready": ready, "reasons": reasons, "broker_checks": watch.checks}
        return _json(self.web, body, status=200 if ready else 503)


@app.page("/stats")
class StatsView(View):
    """Every counter and gauge as JSON."""

    async def get(self, request: Request) -> Response:
        return _json(self.web, metrics.snapshot())


@app.page("/consumer")
class ConsumerView(View):
    """Per input partition: assigned, fetched, paused or held back, position and highwater."""

    async def get(self, request: Request) -> Response:
        return _json(self.web, consumer_state(app))


@app.page("/metrics")
class MetricsView(View):
    """Prometheus text format (every family with HELP and TYPE; ``streams.metrics.CATALOGUE``)."""

    async def get(self, request: Request) -> Response:
        return self.web.bytes(metrics.prometheus().encode(),
                              headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@app.page("/profiles/{user_id}")
class ProfileView(View):
    """The latest profile of a user from the Redis serving copy (any worker answers)."""

    async def get(self, request: Request, user_id: str) -> Response:
        return await _served(self.web, "profile", user_id, "profile")


@app.page("/recommendations/{user_id}")
class RecommendationsView(View):
    """The latest recommendations of a user from the Redis serving copy (any worker answers)."""

    async def get(self, request: Request, user_id: str) -> Response:
        return await _served(self.web, "rec", user_id, "recommendations")


@app.page("/neighbours/{course_id}")
class NeighboursView(View):
    """A course's popularity and nearest courses, from this worker's broadcast index."""

    async def get(self, request: Request, course_id: str) -> Response:
        if course_id not in index.pos:
            return _json(self.web, {"error": f"unknown course {course_id!r}"}, status=404)
        return _json(self.web, {"course_id": course_id, "neighbours": index.neighbours_of(course_id)})


@app.page("/churn/{user_id}")
class ChurnView(View):
    """Churn risk and its top factors, computed by the worker that owns the user (else 404)."""

    async def get(self, request: Request, user_id: str) -> Response:
        from models.profile import UserState
        from streams import tables

        partition_stats, models_for = lookup("partition_stats"), lookup("retention_models")
        if partition_stats is None or models_for is None:
            return _json(self.web, {"error": "churn scoring does not run on this worker"}, status=503)
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return _json(self.web, {"error": "recovering partitions, try again"}, status=503)
        raw = tables.users.get(user_id)
        if raw is None:
            return _json(self.web, {"error": f"{user_id!r} is not on this worker"}, status=404)
        state = UserState.from_bytes(raw)
        stats = partition_stats(state.partition)
        now = max(stats.watermark(int(settings.allowed_lateness_s * 1000)), state.last_ts)
        rm = models_for(state.partition)
        return _json(self.web, {
            "user_id": user_id,
            "as_of": now,
            "risk": rm.churn.risk(state, now, stats.avg_ltv),
            "factors": rm.churn.explain(state, now, top=5, avg_ltv=stats.avg_ltv),
            "examples_learned": rm.churn.n_learned,
            # labels of every partition's merged model it was scored with (null: the partition's own)
            "merged_labels": rm.churn.classifier.merged_labels,
        })
