"""Read a range of one partition's keys from a table's local store, in key order.

faust's RocksDB store keeps one database per partition with its keys sorted, so a range
costs what it holds: the index keys of `stepstream.workflows.retention` are read this
way, never by walking the table. faust's memory store (tests, benches) keeps every
partition in one dict: it is filtered and sorted, at the cost of the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.types import TableT


def keys_in_range(
    table: TableT[bytes, Any],
    partition: int,
    start: bytes,
    stop: bytes,
    most: int,
    partition_of: Callable[[bytes], int],
) -> list[tuple[bytes, bytes]]:
    """Up to `most` (key, value) pairs with `start <= key < stop` in `partition`, in key
    order. `partition_of` tells a key's partition where the store does not."""
    store: Any = table.data
    databases = getattr(store, "_dbs", None)
    if databases is not None:  # faust's RocksDB store on rocksdict
        database = databases.get(partition)
        if database is None:
            return []
        found: list[tuple[bytes, bytes]] = []
        cursor = database.iter()
        cursor.seek(start)
        while cursor.valid() and len(found) < most:
            key = cursor.key()
            if key >= stop:
                break
            found.append((key, cursor.value()))
            cursor.next()
        return found
    keys = sorted(k for k in store.data if start <= k < stop and partition_of(k) == partition)
    return [(key, store.data[key]) for key in keys[:most]]
