"""Where a keyed record lands: Kafka's default partitioner, for sends that name the partition."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


@lru_cache(maxsize=65_536)  # keys are course ids: few, and murmur2 is pure Python (~3 µs)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, the Java client's and aiokafka's)
    gives ``key`` among ``partitions``: a record sent there explicitly lands where a keyed send
    would have put it, so tables keyed by it keep their owner.

    >>> partition_for(b"course-42", 12)
    2
    """
    if partitions < 1:
        msg = f"partitions must be >= 1, got {partitions}"
        raise ValueError(msg)
    return (murmur2(key) & 0x7FFFFFFF) % partitions
