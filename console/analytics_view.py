"""The console's analytics: which workflows ran, and for one of them over a range (24h,
7d, 30d) its outcomes and duration percentiles per version, throughput by hour, each
step's attempts, failures, retries, durations, waits and share of critical paths, and,
for those who see every tenant, the caches' hit rates and rate-limited starts by hour.
The figures come from the rollups (`stepstream.infra.analytics`), cut to the user's
tenants; the charts are SVG drawn here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape

import asyncpg
from aiohttp import web

from stepstream.console import charts, pages
from stepstream.console.access import Who, needs, operator, tenants_of, who
from stepstream.infra.analytics import (
    WorkflowAnalytics,
    analysed_workflows,
    counters_over_time,
    hit_rate,
    workflow_analytics,
)
from stepstream.infra.operators import Role

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def install(app: web.Application, pool: Callable[[], asyncpg.Pool]) -> None:
    viewer = needs(Role.VIEWER)

    async def index(request: web.Request) -> web.Response:
        chosen, since = range_of(request)
        async with pool().acquire() as connection:
            found = await analysed_workflows(connection, since, tenants_of(operator(request)))
        html = index_page(found, chosen, who(request))
        return web.Response(text=html, content_type="text/html")

    async def workflow(request: web.Request) -> web.Response:
        chosen, since = range_of(request)
        user = operator(request)
        raw_version = request.query.get("version", "")
        version = int(raw_version) if raw_version.isdigit() else None
        async with pool().acquire() as connection:
            found = await workflow_analytics(
                connection,
                request.match_info["workflow"],
                since,
                tenant_ids=tenants_of(user),
                version=version,
            )
            if user.tenants is None:  # the workers' counters are every tenant's at once
                found.counters.extend(await counters_over_time(connection, since))
        html = workflow_page(found, chosen, who(request))
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/analytics", viewer(index))
    app.router.add_get("/analytics/{workflow}", viewer(workflow))


def range_of(request: web.Request) -> tuple[str, datetime]:
    chosen = request.query.get("since", "24h")
    chosen = chosen if chosen in RANGES else "24h"
    return chosen, datetime.now(UTC) - RANGES[chosen]


def _ranges(path: str, chosen: str) -> str:
    links = "".join(
        f'<a href="{escape(path)}?since={name}"{" class=chosen" if name == chosen else ""}>'
        f"{name}</a> "
        for name in RANGES
    )
    return f'<p class="ranges">range: {links}</p>'


def index_page(workflows: list[str], chosen: str, who: Who) -> str:
    items = "".join(
        f'<li><a href="/analytics/{escape(w)}?since={chosen}">{escape(w)}</a></li>'
        for w in workflows
    )
    body = _ranges("/analytics", chosen) + (
        f'<ul class="workflows">{items}</ul>' if items else "<p>no executions in this range</p>"
    )
    return pages.layout("analytics", body, who=who)


def workflow_page(found: WorkflowAnalytics, chosen: str, who: Who) -> str:
    versions = "".join(
        f'<tr data-version="{v.version}"><td>v{v.version}</td><td>{v.executions}</td>'
        f"<td>{escape(', '.join(f'{n} {s}' for s, n in v.outcomes.items()))}</td>"
        f"<td>{charts.shown_ms(v.duration_ms.p50)}</td><td>{charts.shown_ms(v.duration_ms.p95)}"
        f"</td><td>{charts.shown_ms(v.duration_ms.p99)}</td></tr>"
        for v in found.versions
    )
    completed = found.completed
    steps = "".join(
        f'<tr data-step="{escape(s.step_id)}"><td>{escape(s.step_id)}</td><td>{s.attempts}</td>'
        f"<td>{s.failure_rate:.1%}</td><td>{s.retries}</td>"
        f"<td>{charts.shown_ms(s.duration_ms.p50)}</td><td>{charts.shown_ms(s.duration_ms.p95)}"
        f"</td><td>{charts.shown_ms(s.wait_ms.p50)}</td><td>{charts.shown_ms(s.wait_ms.p95)}</td>"
        f"<td>{s.critical}{f' ({s.critical / completed:.0%})' if completed else ''}</td></tr>"
        for s in found.steps
    )
    started = dict(found.throughput)
    hours = [
        (f"{hour:%d %H}h", started.get(hour, {}))
        for n in range(int((found.until - found.since).total_seconds() // 3600))
        if (hour := found.since + timedelta(hours=n)) is not None
    ]
    body = (
        _ranges(f"/analytics/{found.workflow_id}", chosen)
        + f"<p>{found.since:%Y-%m-%d %H:%M} to {found.until:%Y-%m-%d %H:%M} UTC</p>"
        + '<h2>executions by version</h2><table class="versions"><thead><tr><th>version</th>'
        "<th>executions</th><th>outcomes</th><th>p50</th><th>p95</th><th>p99</th></tr>"
        f"</thead><tbody>{versions or '<tr><td colspan=6>none</td></tr>'}</tbody></table>"
        + charts.stacked_bars(hours, "executions started per hour, by outcome")
        + '<h2>steps</h2><table class="steps"><thead><tr><th>step</th><th>attempts</th>'
        "<th>failure rate</th><th>retries</th><th>ran p50</th><th>ran p95</th>"
        "<th>waited p50</th><th>waited p95</th><th>on the critical path</th></tr></thead>"
        f"<tbody>{steps or '<tr><td colspan=9>none</td></tr>'}</tbody></table>"
        + charts.step_bars(
            [(s.step_id, s.duration_ms.p50, s.duration_ms.p95) for s in found.steps],
            "how long steps ran",
        )
        + charts.step_bars(
            [(s.step_id, s.wait_ms.p50, s.wait_ms.p95) for s in found.steps],
            "how long steps waited for a worker",
        )
        + _counters(found)
    )
    return pages.layout(f"analytics: {found.workflow_id}", body, who=who)


def _counters(found: WorkflowAnalytics) -> str:
    if not found.counters:
        return ""
    rows = "".join(
        f"<tr><td>{h:%m-%d %H:00}</td>"
        + "".join(
            f"<td>{'-' if (r := hit_rate(counts, c)) is None else f'{r:.0%}'}</td>"
            for c in ("definitions", "ai")
        )
        + f"<td>{sum(n for k, n in counts.items() if k.endswith('.rejected')):.0f}</td></tr>"
        for h, counts in found.counters
    )
    return (
        "<h2>caches and rate limits (every workflow, every tenant)</h2>"
        '<table class="counters"><thead><tr><th>hour</th><th>definitions cache hits</th>'
        "<th>AI cache hits</th><th>starts rate-limited</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
