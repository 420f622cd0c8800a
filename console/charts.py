"""Charts as inline SVG, drawn on the server: an execution's timeline (every attempt on
one time axis, the critical path marked), bars over hours, and horizontal bars for
steps. No charting library, nothing fetched. Pure: data in, markup out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

STATUS_COLOURS = {
    "completed": "#43a047",
    "failed": "#e53935",
    "timed_out": "#c62828",
    "cancelled": "#8d6e63",
    "rejected": "#6d4c41",
    "running": "#fb8c00",
    "skipped": "#9e9e9e",
}


def shown_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s" if ms < 120_000 else f"{ms / 60_000:.1f} min"


@dataclass(frozen=True)
class Bar:
    """One attempt on the timeline: waiting (released to started), then running."""

    step_id: str
    attempt: int
    status: str
    released: datetime | None
    started: datetime | None
    finished: datetime | None
    critical: bool = False


def timeline(bars: Sequence[Bar], width: int = 900) -> str:
    """A Gantt chart: a row per attempt, a hatched part for the wait and a solid one for
    the run, coloured by outcome; attempts on the critical path are outlined."""
    times = [t for b in bars for t in (b.released, b.started, b.finished) if t is not None]
    if not times:
        return '<p class="timeline">no attempt has run yet</p>'
    origin, end = min(times), max(times)
    span = max((end - origin).total_seconds() * 1000, 1.0)
    label, row, left = 150, 22, 160
    plot = width - left - 90

    def x(moment: datetime) -> float:
        return left + plot * (moment - origin).total_seconds() * 1000 / span

    height = len(bars) * row + 34
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" xmlns="http://www.w3.org/2000/svg" role="img"'
        ' aria-label="timeline of attempts">'
        '<defs><pattern id="waiting" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="3" height="6" fill="#b0bec5"/>'
        "</pattern></defs>"
    ]
    for i, bar in enumerate(bars):
        y = 8 + i * row
        colour = STATUS_COLOURS.get(bar.status, "#90a4ae")
        name = f"{bar.step_id} #{bar.attempt}"
        marked = " critical" if bar.critical else ""
        parts.append(
            f'<g class="attempt{marked}" data-step="{escape(bar.step_id)}"'
            f' data-attempt="{bar.attempt}"><text x="4" y="{y + 14}">'
            f"{escape(name[:22])}</text>"
        )
        start = bar.started or bar.released
        if bar.released and bar.started and bar.started > bar.released:
            w = max(x(bar.started) - x(bar.released), 1)
            wait = (bar.started - bar.released).total_seconds() * 1000
            parts.append(
                f'<rect class="wait" x="{x(bar.released):.1f}" y="{y + 3}" width="{w:.1f}"'
                f' height="{row - 8}" fill="url(#waiting)"><title>waited {shown_ms(wait)}'
                "</title></rect>"
            )
        if start and bar.finished:
            w = max(x(bar.finished) - x(start), 2)
            ran = (bar.finished - start).total_seconds() * 1000
            parts.append(
                f'<rect class="run" x="{x(start):.1f}" y="{y + 3}" width="{w:.1f}"'
                f' height="{row - 8}" fill="{colour}"><title>{escape(bar.status)} in'
                f" {shown_ms(ran)}</title></rect>"
                f'<text class="took" x="{x(start) + w + 4:.1f}" y="{y + 14}">'
                f"{shown_ms(ran)}</text>"
            )
        parts.append("</g>")
    axis_y = height - 18
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot}" y2="{axis_y}" class="axis"/>'
        f'<text x="{left}" y="{axis_y + 14}">0</text>'
        f'<text x="{left + plot}" y="{axis_y + 14}" text-anchor="end">{shown_ms(span)}</text>'
        f'<text x="{label}" y="{axis_y + 14}" text-anchor="end" class="legend">'
        "critical path: outlined</text></svg>"
    )
    return "".join(parts)


def stacked_bars(
    series: Sequence[tuple[str, Mapping[str, float]]], title: str, width: int = 900
) -> str:
    """A bar per label (an hour), stacked by key (an outcome)."""
    if not series:
        return f'<p class="chart">{escape(title)}: nothing in this range</p>'
    top = max(sum(counts.values()) for _, counts in series) or 1
    height, bottom, left = 180, 24, 40
    step = (width - left) / len(series)
    parts = [
        f'<figure class="chart"><figcaption>{escape(title)} (highest {top:g})</figcaption>'
        f'<svg viewBox="0 0 {width} {height + bottom}" width="{width}"'
        f' height="{height + bottom}" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' aria-label="{escape(title)}">'
    ]
    for i, (name, counts) in enumerate(series):
        y = float(height)
        for key, value in sorted(counts.items()):
            h = height * value / top
            y -= h
            parts.append(
                f'<rect x="{left + i * step + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}"'
                f' height="{h:.1f}" fill="{STATUS_COLOURS.get(key, "#5c6bc0")}">'
                f"<title>{escape(name)}: {value:g} {escape(key)}</title></rect>"
            )
        if len(series) <= 24 or i % (len(series) // 12 or 1) == 0:
            parts.append(f'<text x="{left + i * step:.1f}" y="{height + 16}">{escape(name)}</text>')
    parts.append("</svg></figure>")
    return "".join(parts)


def step_bars(rows: Sequence[tuple[str, float | None, float | None]], title: str) -> str:
    """A row per step: p50 as a solid bar, p95 as a lighter one behind it."""
    values = [v for _, p50, p95 in rows for v in (p50, p95) if v is not None]
    if not values:
        return f'<p class="chart">{escape(title)}: nothing in this range</p>'
    top, width, row, left = max(values), 900, 22, 160
    plot = width - left - 120
    height = len(rows) * row + 10
    parts = [
        f'<figure class="chart"><figcaption>{escape(title)}: p50 (dark), p95 (light)'
        f'</figcaption><svg viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}">'
    ]
    for i, (step, p50, p95) in enumerate(rows):
        y = 4 + i * row
        parts.append(f'<text x="4" y="{y + 14}">{escape(step[:22])}</text>')
        for value, colour in ((p95, "#9fa8da"), (p50, "#3949ab")):
            if value is not None:
                w = max(plot * value / top, 1)
                parts.append(
                    f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}"'
                    f' fill="{colour}"/>'
                )
        parts.append(
            f'<text x="{left + plot + 6}" y="{y + 14}">{shown_ms(p50)} / {shown_ms(p95)}</text>'
        )
    parts.append("</svg></figure>")
    return "".join(parts)
