"""Percentiles read from the analytics' histograms are within a bucket (10%) of exact."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from stepstream.infra.histogram import GROWTH, bucket_of, percentile


def test_an_empty_histogram_has_no_percentile() -> None:
    assert percentile({}, 0.5) is None


@given(
    st.lists(st.floats(1.0, 1e8, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_a_percentile_is_within_a_bucket_of_the_exact_one(
    values: list[float], fraction: float
) -> None:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    ordered = sorted(values)
    exact = ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
    read = percentile(counts, fraction)
    assert read is not None
    assert exact / GROWTH <= read <= exact * GROWTH


def test_values_under_a_millisecond_share_the_first_bucket() -> None:
    assert bucket_of(0.0) == bucket_of(0.9) == bucket_of(1.0) == 0
    assert bucket_of(1.1) == 1
