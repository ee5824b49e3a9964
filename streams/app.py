"""The app as a factory: :func:`create_app` builds a configured ``faust.App`` from settings.

Importing this module reads nothing and starts nothing. The worker process has one *default*
app, built on first use by :func:`get_app` from the settings chosen with :func:`configure` (the
runner does that once the embedded broker is up) or else read from the environment. Agents,
topics and tables register against it at import, as Faust expects (``@app.agent`` at module
level): ``from streams.app import app, settings`` resolves, on first import, to that default app
and its settings (a module ``__getattr__``, PEP 562), so nothing is built before it is needed and
``env -i python -c "import agents.ingest"`` needs no broker and no environment. Agents are found
by :func:`load_agents` (imports every module of ``agents``, failing loudly), then the runner hands
:func:`get_app` to ``faust.Worker``.

>>> from streams.settings import Settings
>>> create_app(Settings.from_env({}, app_id="doc")).conf.id
'doc'
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import faust

from streams.kafka_auth import faust_credentials
from streams.settings import Settings

#: besides these, ``app`` and ``settings`` (the default app and its settings, built on first use)
__all__ = ["configure", "create_app", "get_app", "get_settings", "install_patches", "load_agents"]

_settings: Settings | None = None
_app: faust.App | None = None


def create_app(settings: Settings) -> faust.App:
    """A new ``faust.App`` configured from ``settings``; contacts no broker and changes no global.

    The default app of the worker is one of these (:func:`get_app`); tests build fresh ones.
    """
    return faust.App(
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


def configure(settings: Settings) -> None:
    """Choose the settings of this process's default app, before anything has used it.

    Raises RuntimeError when the default app already exists with other settings: agents have
    registered against it, and a second app would leave them behind.
    """
    global _settings  # noqa: PLW0603 - the process's one default
    if _app is not None and settings != _settings:
        msg = "the default app is already built from other settings: configure() before importing agents"
        raise RuntimeError(msg)
    _settings = settings


def get_settings() -> Settings:
    """The default app's settings: those given to :func:`configure`, else read from the environment."""
    global _settings  # noqa: PLW0603 - the process's one default
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def get_app() -> faust.App:
    """The process's default app (agents, topics, tables and web views register against it)."""
    global _app  # noqa: PLW0603 - the process's one default
    if _app is None:
        _app = create_app(get_settings())
    return _app


def install_patches(settings: Settings) -> None:
    """The worker's process-wide changes to Faust and aiokafka (idempotent); the runner calls it.

    Fetch waits bounded by the settings, table recovery to the changelogs' true ends
    (streams/recovery.py), committed offsets that never stall (faust-streaming#596;
    streams/commits.py).
    """
    from streams.commits import install as install_commits
    from streams.recovery import install as install_recovery

    _tune_fetch_wait(settings.fetch_max_wait_ms, settings.fetch_min_bytes)
    install_recovery(settings)
    install_commits()


def load_agents() -> list[str]:
    """Import every module of the ``agents`` package (and the web views), failing loudly.

    Faust's venusian autodiscovery logs a broken agent module as a warning and runs without it;
    here an import error stops the worker instead. This is the one place ``streams`` names the
    ``agents`` package.
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


def __getattr__(name: str) -> Any:  # noqa: ANN401 - the default app or its settings
    """``streams.app.app`` and ``streams.app.settings``: the default app and settings, built on first use."""
    if name == "app":
        return get_app()
    if name == "settings":
        return get_settings()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
