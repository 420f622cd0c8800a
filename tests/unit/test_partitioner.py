"""The cached partitioner puts every key where Kafka's default partitioner does: other
producers (clients, workers in other languages) must find an execution's records on the
same partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from stepstream.streams.partitioner import cached_partitioner


@given(key=st.binary(min_size=0, max_size=64), count=st.integers(min_value=1, max_value=64))
def test_keys_land_where_the_default_partitioner_puts_them(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert cached_partitioner(key, partitions, partitions) == expected
    assert cached_partitioner(key, partitions, partitions) == expected  # from the cache


def test_known_keys_land_where_the_java_client_puts_them() -> None:
    # Kafka's UtilsTest: murmur2("foobar") = -790332482, murmur2("abc") = 479470107;
    # the partition is toPositive(hash) % count.
    partitions = list(range(8))
    assert cached_partitioner(b"foobar", partitions, partitions) == (-790332482 & 0x7FFFFFFF) % 8
    assert cached_partitioner(b"abc", partitions, partitions) == 479470107 % 8


def test_records_without_a_key_go_to_an_available_partition() -> None:
    assert cached_partitioner(None, [0, 1, 2, 3], [2]) == 2
