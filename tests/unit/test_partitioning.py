"""Explicit partitions for bundled sends match what Kafka's default partitioner does per key."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.partitioning import partition_for


@pytest.mark.parametrize("partitions", [1, 3, 12, 64])
def test_partition_for_matches_the_default_partitioner(partitions):
    default = DefaultPartitioner()
    every = list(range(partitions))
    keys = [f"course-{i}".encode() for i in range(500)] + [b"", b"AAA-2013J/546614", "é".encode()]
    for key in keys:
        assert partition_for(key, partitions) == default(key, every, every)


def test_partition_for_spreads_keys_and_refuses_no_partitions():
    seen = {partition_for(f"c{i}".encode(), 12) for i in range(200)}
    assert seen == set(range(12))
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        partition_for(b"x", 0)
