"""Duration histograms as the analytics rollups keep them (migration 0012): bucket b holds
values in [1.1^b, 1.1^(b+1)) milliseconds, bucket 0 everything under 1.1 ms. Merging two
histograms is adding counts; a percentile read from one is the geometric middle of its
bucket, within 5% of the exact value. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping

GROWTH = 1.1


def bucket_of(ms: float) -> int:
    """The bucket the database's analytics_bucket() gives (kept equal by a test)."""
    return math.floor(math.log(max(ms, 1.0)) / math.log(GROWTH))


def middle_of(bucket: int) -> float:
    return float(GROWTH ** (bucket + 0.5))


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The value below which `fraction` of the counted values fall (nearest rank), or
    None for an empty histogram."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return middle_of(bucket)
    return middle_of(max(counts))
