"""Which partition a keyed record goes to: Kafka's default (murmur2 of the key, as the
Java client and every other client compute it), remembered for recent keys.

aiokafka computes murmur2 in pure Python, ~3 us for an execution id, and the engine
sends several records per step under the same execution id. Records must land where
every other producer (clients, workers in other languages) puts the same key, so this
only caches the default; it never changes it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65_536)
def partition_index(key: bytes, partition_count: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partition_count


def cached_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """aiokafka's partitioner signature; `all_partitions` is sorted by partition id."""
    if key is None:
        return random.choice(available or all_partitions)  # noqa: S311 - not security
    return all_partitions[partition_index(key, len(all_partitions))]
