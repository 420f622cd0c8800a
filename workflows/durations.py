"""Durations and instants as definitions write them. Pure: no clock is read here.

A duration is `30s`, `15m`, `2h`, `7d` (or `500ms`), a sum of them (`1h30m`), or
ISO-8601 (`PT2H`, `P1DT12H`, `P2W`; no years or months, whose length depends on the
date). An instant is ISO-8601 with a time zone (`2026-12-04T09:00:00Z`) or a number of
milliseconds since the epoch.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
SHORT = re.compile(r"(\d+)(ms|s|m|h|d|w)")
ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


class DurationError(ValueError):
    pass


def parse_duration(text: Any) -> int:
    """Milliseconds in a written duration; raises DurationError saying what is accepted."""
    if not isinstance(text, str) or not text.strip():
        raise DurationError(
            f"a duration is a string such as 30s, 15m, 2h, 7d or PT2H, got {text!r}"
        )
    written = text.strip()
    if written.startswith("P"):
        match = ISO.fullmatch(written)
        if match is None or written in ("P", "PT") or written.endswith("T"):
            raise DurationError(f"not an ISO-8601 duration (PnWnDTnHnMnS): {written!r}")
        parts = match.groupdict()
        seconds = float(parts["s"] or 0)
        total = sum(int(parts[u] or 0) * UNITS_MS[u] for u in ("w", "d", "h", "m"))
        return total + round(seconds * 1000)
    pieces = SHORT.findall(written)
    if not pieces or "".join(f"{n}{u}" for n, u in pieces) != written:
        raise DurationError(f"not a duration such as 30s, 15m, 2h, 7d or 1h30m: {written!r}")
    return sum(int(number) * UNITS_MS[unit] for number, unit in pieces)


def written_duration(ms: int) -> str:
    """A duration as `parse_duration` reads it back, in the largest unit that divides it."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms and ms % UNITS_MS[unit] == 0:
            return f"{ms // UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def parse_instant(value: Any) -> int:
    """Milliseconds since the epoch of an ISO-8601 instant (with its zone) or a number."""
    if isinstance(value, bool):
        raise DurationError(f"an instant is ISO-8601 or epoch milliseconds, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str):
        raise DurationError(f"an instant is ISO-8601 or epoch milliseconds, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DurationError(f"not an ISO-8601 instant: {value!r}") from None
    if parsed.tzinfo is None:
        raise DurationError(f"an instant needs its time zone (e.g. Z or +02:00): {value!r}")
    return round(parsed.timestamp() * 1000)


def iso(ms: int) -> str:
    """An instant as ISO-8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
