"""The one ``faust.App``, created once from the settings; agents are found by autodiscovery.

Import this only after the broker is known (``KAFKA_BROKER`` set): ``streams.runner`` starts the
embedded services first when nothing is configured.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import faust

from streams.commits import install as _install_commits
from streams.kafka_auth import faust_credentials
from streams.recovery import install as _install_recovery
from streams.settings import Settings

__all__ = ["app", "load_agents", "settings"]


def load_agents() -> list[str]:
    """Import every module of the ``agents`` package (and the web views), failing loudly.

    Faust's venusian autodiscovery logs a broken agent module as a warning and runs without it;
    here an import error stops the worker instead.
    """
    import agents

    names = [f"agents.{m.name}" for m in pkgutil.iter_modules(agents.__path__)]
    for name in [*names, "streams.web"]:
        importlib.import_module(name)
    return names


def _tune_fetch_wait(max_wait_ms: int, min_bytes: int = 1) -> None:
    """Let the worker's consumer wait at most ``max_wait_ms`` for a fetch.

    Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``, and Tansu holds a fetch for
    about half of that even while records arrive: a floor of ~750 ms under event->output latency.
    The consumer reads the value when it starts, so it is set right after construction.
    """
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "coursepulse_tuned", False):
        return

    def create(self, transport):  # noqa: ANN001, ANN202 - faust's signature
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # noqa: SLF001 - read by consumer.start()
        consumer._fetch_min_bytes = min_bytes  # noqa: SLF001 - likewise
        return consumer

    create.coursepulse_tuned = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create


settings = Settings.from_env()
if not settings.kafka_broker:
    msg = "KAFKA_BROKER is not set: start the worker with `coursepulse worker`, which starts the embedded broker"
    raise RuntimeError(msg)

_tune_fetch_wait(settings.fetch_max_wait_ms, settings.fetch_min_bytes)
_install_recovery(settings)  # recovery reads every changelog to its true end (streams/recovery.py)
_install_commits()  # committed offsets never stall (faust-streaming#596; streams/commits.py)

app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
    broker_credentials=faust_credentials(settings),
    store=settings.store,
    datadir=str(Path(settings.data_dir) / settings.app_id),
    autodiscover=False,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication,
    topic_allow_declare=True,
    processing_guarantee=settings.processing_guarantee,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.heartbeat_s,
    broker_rebalance_timeout=max(10.0, settings.session_timeout_s * 2),
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    value_serializer="raw",
    web_bind=settings.web_host,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    producer_linger_ms=10,
    producer_max_batch_size=524_288,
    producer_max_request_size=4_194_304,
    table_standby_replicas=0,
    # a revoked partition's batch in flight finishes (and is flushed) before its new owner
    # starts: otherwise its late changelog writes land after the new owner's (stale state wins)
    stream_wait_empty=True,
    recovery_consistency_check=settings.recovery_consistency_check,
)
