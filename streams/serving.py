"""The Redis serving copy: latest profiles and recommendations with TTLs, caught up after outages.

Redis is never the source of truth: the same bytes go to the compacted ``user-profiles`` and
``recommendations`` topics first. A write that fails, or is skipped while Redis is backing off,
is kept as *owed* (the latest value per ``(kind, id)``: a newer write replaces an older owed one,
a successful newer write clears it) and :meth:`RedisServing.retry_owed` writes it once Redis
answers again; the pause between attempts doubles per consecutive failure up to a cap.

Two cases need more than the owed map, and mark the copy as needing a re-sync from the topics
(``streams.serving_resync``, driven by ``agents.serving_repair``): more than ``max_owed`` owed
values (the owed map is dropped to bound memory), and a Redis that lost its data (restarted
without persistence, flushed, failed over to an empty replica), seen as this worker's marker key
being gone. No Redis error ever reaches the caller: an outage degrades serving, never processing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams.metrics import metrics

__all__ = ["RedisServing"]

log = logging.getLogger(__name__)

#: (kind, id) of a serving copy
Key = tuple[str, str]


class RedisServing:
    """Writes and reads of ``{prefix}{kind}:{id}`` keys, resilient to Redis being away."""

    def __init__(self, url: str, prefix: str = "cp:", ttl_s: int = 7 * 86_400, backoff_s: float = 0.5,
                 backoff_max_s: float = 30.0, max_owed: int = 50_000,
                 client_options: dict[str, Any] | None = None) -> None:
        if ttl_s <= 0:
            msg = f"ttl_s must be > 0, got {ttl_s}"
            raise ValueError(msg)
        if not 0 < backoff_s <= backoff_max_s:
            msg = f"need 0 < backoff_s <= backoff_max_s, got {backoff_s}, {backoff_max_s}"
            raise ValueError(msg)
        if max_owed < 0:
            msg = f"max_owed must be >= 0, got {max_owed}"
            raise ValueError(msg)
        self.url = url
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_owed = max_owed
        self._client_options = dict(client_options or {})
        self._redis: aioredis.Redis | None = None  # made on first use: constructing reads no setting
        self._down_until = 0.0
        self._delay = 0.0  # the current pause after a failure; 0 while Redis answers
        self._seq = 0  # orders owed values against writes in flight
        self._owed: dict[Key, tuple[int, bytes]] = {}
        #: True when the owed map is not enough: the copy must be rebuilt from the topics
        self.resync_needed = False
        self._resync_marks = 0  # a re-sync clears the flag only if nothing marked it since it began
        self._fresh: set[Key] | None = None  # while a re-sync runs: keys written or owed since it began
        self._lock = asyncio.Lock()  # orders live writes against re-sync writes of the same keys
        self.marker = f"{prefix}serving-marker:{uuid.uuid4().hex}"
        self._marked = False
        self._ever_failed = False
        self._gauge()

    @classmethod
    def from_settings(cls, settings: Any) -> RedisServing:  # noqa: ANN401 - streams.settings.Settings
        """The serving copy configured by ``settings`` (URL, prefix, TTL, AUTH/TLS, bounds)."""
        return cls(settings.redis_url, prefix=settings.redis_prefix, ttl_s=settings.redis_ttl_s,
                   backoff_max_s=settings.redis_backoff_max_s, max_owed=settings.redis_max_owed,
                   client_options=settings.redis_options())

    @property
    def _client(self) -> aioredis.Redis:
        """The Redis client, made on first use (so importing the worker's modules needs no Redis URL)."""
        if self._redis is None:
            self._redis = aioredis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                            **self._client_options)
        return self._redis

    def key(self, kind: str, ident: str) -> str:
        """The Redis key of one serving value, e.g. ``cp:rec:u1``."""
        return f"{self.prefix}{kind}:{ident}"

    # ------------------------------------------------------------------ state

    @property
    def owed(self) -> int:
        """How many values Redis is owed."""
        return len(self._owed)

    @property
    def pause_s(self) -> float:
        """The current pause between attempts (0 while Redis answers)."""
        return self._delay

    def available(self) -> bool:
        """Whether Redis may be tried now (not within the pause after a failure)."""
        return time.monotonic() >= self._down_until

    def _gauge(self) -> None:
        metrics.set("redis_behind", float(len(self._owed)))
        metrics.set("redis_resync_needed", 1.0 if self.resync_needed else 0.0)

    def _failed(self, exc: Exception) -> None:
        metrics.inc("redis_errors")
        self._ever_failed = True
        first = not self._delay
        self._delay = min(self.backoff_max_s, self._delay * 2) if self._delay else self.backoff_s
        if first:
            log.warning("Redis unavailable (%s); writes are kept as owed and retried", exc)
        self._down_until = time.monotonic() + self._delay

    def _answered(self) -> None:
        if self._delay:
            log.info("Redis answers again; %d owed values to write%s", len(self._owed),
                     ", then a re-sync" if self.resync_needed else "")
        self._delay = 0.0
        self._down_until = 0.0

    def mark_resync(self, reason: str) -> None:
        """Drop the owed map; the copy must be rebuilt from the topics."""
        if not self.resync_needed:
            log.warning("Redis serving copy needs a re-sync: %s", reason)
        self._owed.clear()
        self.resync_needed = True
        self._resync_marks += 1
        metrics.inc("redis_resync_marked")
        self._gauge()

    def _owe(self, kind: str, pairs: list[tuple[str, bytes]]) -> None:
        for ident, value in pairs:
            self._seq += 1
            self._owed[(kind, ident)] = (self._seq, value)
            if self._fresh is not None:
                self._fresh.add((kind, ident))
        if len(self._owed) > self.max_owed:
            self.mark_resync(f"more than {self.max_owed} writes owed (COURSEPULSE_REDIS_MAX_OWED)")
        self._gauge()

    def _clear_owed(self, keys: Iterable[Key], written_at: int) -> None:
        """Forget owed values written by a write that began at ``written_at`` (not newer ones)."""
        for key in keys:
            entry = self._owed.get(key)
            if entry is not None and entry[0] <= written_at:
                del self._owed[key]

    # ------------------------------------------------------------------ writes

    async def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> int:
        """SET each ``(id, value)`` with the TTL in one pipeline; return how many were written.

        When Redis is away the values are kept as owed (and 0 is returned); nothing is raised.
        """
        pairs = list(items)
        if not pairs:
            return 0
        if not self.available():
            metrics.inc("redis_skipped", by=len(pairs))
            self._owe(kind, pairs)
            return 0
        began = self._seq
        try:
            async with self._lock:
                async with self._client.pipeline(transaction=False) as pipe:
                    for ident, value in pairs:
                        pipe.set(self.key(kind, ident), value, ex=self.ttl_s)
                    await pipe.execute()
                if self._fresh is not None:
                    self._fresh.update((kind, ident) for ident, _ in pairs)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            self._owe(kind, pairs)
            return 0
        self._answered()
        if self._owed:
            self._clear_owed(((kind, ident) for ident, _ in pairs), began)
            self._gauge()
        metrics.inc("redis_writes", kind, len(pairs))
        return len(pairs)

    async def retry_owed(self, chunk: int = 1000) -> int:
        """Write the owed values (in pipelines of ``chunk``) unless Redis is still in its pause."""
        written = 0
        while self._owed and self.available():
            began = self._seq
            batch = list(itertools.islice(self._owed.items(), chunk))
            try:
                async with self._lock:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for (kind, ident), (_, value) in batch:
                            pipe.set(self.key(kind, ident), value, ex=self.ttl_s)
                        await pipe.execute()
            except (RedisError, OSError) as exc:
                self._failed(exc)
                break
            self._answered()
            self._clear_owed((key for key, _ in batch), began)
            written += len(batch)
        if written:
            metrics.inc("redis_retried", by=written)
            log.info("wrote %d owed values to Redis; %d still owed", written, len(self._owed))
        self._gauge()
        return written

    async def check(self) -> bool:
        """Whether Redis still holds what this worker wrote (its marker key); False marks a re-sync.

        The marker (TTL ``ttl_s``, refreshed here) is set on the first contact. When that first
        contact follows a failure, Redis may have lost data before this worker saw it: re-sync.
        """
        if not self.available():
            return False
        try:
            if not self._marked:
                await self._client.set(self.marker, b"1", ex=self.ttl_s)
                self._marked = True
                if self._ever_failed:
                    self.mark_resync("Redis was away before this worker first reached it")
            elif not await self._client.expire(self.marker, self.ttl_s):
                self.mark_resync("this worker's marker key is gone (Redis restarted empty or was flushed)")
                await self._client.set(self.marker, b"1", ex=self.ttl_s)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._answered()
        return not self.resync_needed

    # ------------------------------------------------------------------ re-sync protocol

    def begin_resync(self) -> int:
        """Start tracking keys written or owed from now on: a re-sync must not overwrite them
        with the (older) values it reads from the topics. Returns a token for :meth:`end_resync`."""
        self._fresh = set(self._owed)
        return self._resync_marks

    async def put_resynced(self, kind: str, items: Iterable[tuple[str, bytes | None, int]]) -> int:
        """Write re-synced ``(id, value, ttl_s)`` (None: delete) except keys written or owed since
        :meth:`begin_resync`; Redis errors are raised (the re-sync stops and is retried)."""
        n = 0
        try:
            async with self._lock:
                fresh = self._fresh or set()
                async with self._client.pipeline(transaction=False) as pipe:
                    for ident, value, ttl_s in items:
                        if (kind, ident) in fresh:
                            continue
                        if value is None:
                            pipe.delete(self.key(kind, ident))
                        else:
                            pipe.set(self.key(kind, ident), value, ex=ttl_s)
                        n += 1
                    if n:
                        await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise
        self._answered()
        return n

    def end_resync(self, token: int, ok: bool) -> None:
        """Stop tracking; a successful re-sync clears the flag unless it was marked meanwhile."""
        self._fresh = None
        if ok and token == self._resync_marks:
            self.resync_needed = False
        self._gauge()

    # ------------------------------------------------------------------ reads

    async def get(self, kind: str, ident: str) -> bytes | None:
        """The stored value, or None when absent or Redis is away."""
        if not self.available():
            return None
        try:
            value = await self._client.get(self.key(kind, ident))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._answered()
        return value

    async def close(self) -> None:
        """Close the client, if one was made."""
        if self._redis is not None:
            await self._redis.aclose()
