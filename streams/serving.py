"""The Redis serving copy: latest profiles (and later recommendations) with TTLs.

Redis is never the source of truth. Every call here swallows Redis failures, counts them and
backs off for a while, so an outage degrades serving and never stalls processing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams.metrics import metrics

__all__ = ["RedisServing"]

log = logging.getLogger(__name__)


class RedisServing:
    """Writes and reads of ``{prefix}{kind}:{id}`` keys, resilient to Redis being away."""

    def __init__(self, url: str, prefix: str = "cp:", ttl_s: int = 7 * 86_400, backoff_s: float = 5.0) -> None:
        if ttl_s <= 0:
            msg = f"ttl_s must be > 0, got {ttl_s}"
            raise ValueError(msg)
        self.url = url
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.backoff_s = backoff_s
        self._client = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._down_until = 0.0

    def key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}:{ident}"

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        metrics.inc("redis_errors")
        if self._available():
            log.warning("Redis unavailable (%s); serving copies paused for %.0f s", exc, self.backoff_s)
        self._down_until = time.monotonic() + self.backoff_s

    async def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> int:
        """SET each ``(id, value)`` with the TTL in one pipeline; return how many were written."""
        if not self._available():
            metrics.inc("redis_skipped")
            return 0
        n = 0
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for ident, value in items:
                    pipe.set(self.key(kind, ident), value, ex=self.ttl_s)
                    n += 1
                if n:
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return 0
        metrics.inc("redis_writes", kind, n)
        return n

    async def get(self, kind: str, ident: str) -> bytes | None:
        """The stored value, or None when absent or Redis is away."""
        if not self._available():
            return None
        try:
            return await self._client.get(self.key(kind, ident))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None

    async def close(self) -> None:
        await self._client.aclose()
