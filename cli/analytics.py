"""`stepstream analytics WORKFLOW --since 24h`: how a workflow did over a time range, from
the hourly rollups in PostgreSQL (`stepstream.infra.analytics`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import click

from stepstream.cli.errors import invalid
from stepstream.cli.support import load_settings, output_option, print_json, run
from stepstream.infra.analytics import (
    Percentiles,
    WorkflowAnalytics,
    counters_over_time,
    hit_rate,
    workflow_analytics,
)
from stepstream.workflows.durations import DurationError, parse_duration


def since_of(text: str, now: datetime) -> datetime:
    """`24h`, `7d`, `90m` ago, or an ISO-8601 instant."""
    try:
        return now - timedelta(milliseconds=parse_duration(text))
    except DurationError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"--since {text!r}: give a duration (24h, 7d) or an ISO-8601 instant"
        raise invalid(message) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def shown(p: Percentiles) -> str:
    return f"p50 {ms(p.p50)}, p95 {ms(p.p95)}" + (f", p99 {ms(p.p99)}" if p.p99 else "")


def report(found: WorkflowAnalytics) -> str:
    lines = [
        f"{found.workflow_id}: {found.since:%Y-%m-%d %H:%M} to {found.until:%Y-%m-%d %H:%M} UTC"
    ]
    for v in found.versions:
        outcomes = ", ".join(f"{n} {status}" for status, n in v.outcomes.items())
        lines.append(f"  v{v.version}: {v.executions} executions ({outcomes})")
        lines.append(f"    duration of completed: {shown(v.duration_ms)}")
    if not found.versions:
        lines.append("  no executions in this range")
    for s in found.steps:
        share = f"{s.critical / found.completed:.0%}" if found.completed else "-"
        lines.append(
            f"  step {s.step_id}: {s.attempts} attempts, {s.failure_rate:.1%} failed, "
            f"{s.retries} retries; ran {shown(s.duration_ms)}; waited {shown(s.wait_ms)}; "
            f"critical path in {s.critical} ({share})"
        )
    for hour, counts in found.counters:
        rates = [
            f"{c} cache {rate:.0%}"
            for c in ("definitions", "ai")
            if (rate := hit_rate(counts, c)) is not None
        ]
        rejected = sum(n for name, n in counts.items() if name.endswith(".rejected"))
        caches = ", ".join(rates) or "no cache lookups"
        lines.append(f"  {hour:%m-%d %H:00}: {caches}; {rejected:.0f} starts rate-limited")
    return "\n".join(lines)


@click.command("analytics")
@click.argument("workflow_id")
@click.option("--since", default="24h", show_default=True, help="A duration ago, or an instant.")
@click.option("--version", "version", type=int, default=None, help="Only this version.")
@click.option("--tenant", multiple=True, help="Only these tenants (repeat for more).")
@output_option
def analytics(
    workflow_id: str, since: str, version: int | None, tenant: tuple[str, ...], output: str
) -> None:
    """How WORKFLOW_ID did: executions by outcome and duration percentiles per version,
    per step attempts, failure rate, retries, durations, waits and how often it was on
    the critical path, and the caches' hit rates and rate-limited starts by hour."""
    now = datetime.now(UTC)
    start = since_of(since, now)

    async def go() -> WorkflowAnalytics:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            found = await workflow_analytics(
                connection, workflow_id, start, tenant_ids=list(tenant) or None, version=version
            )
            counters = await counters_over_time(connection, start)
        finally:
            await connection.close()
        return WorkflowAnalytics(**{**vars(found), "counters": counters})

    found = run(go())
    if output == "json":
        print_json(found.as_dict())
    else:
        click.echo(report(found))
