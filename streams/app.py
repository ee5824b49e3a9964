"""The one ``faust.App``, created once from the settings; agents are found by autodiscovery.

Import this only after the broker is known (``KAFKA_BROKER`` set): ``streams.runner`` starts the
embedded services first when nothing is configured.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import faust

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


settings = Settings.from_env()
if not settings.kafka_broker:
    msg = "KAFKA_BROKER is not set: start the worker with `coursepulse worker`, which starts the embedded broker"
    raise RuntimeError(msg)

app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
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
    stream_wait_empty=False,
    recovery_consistency_check=settings.recovery_consistency_check,
)
