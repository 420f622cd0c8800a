"""Commands for running stepstream itself: services, worker, database, topics, demo."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import click

from stepstream.cli.errors import ExitCode
from stepstream.cli.support import load_settings, output_option, print_json, run
from stepstream.streams.roles import ROLES

SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / "infra" / "local" / "services.sh"


@click.command()
@click.argument("action", type=click.Choice(["up", "down", "status", "env"]))
@click.argument("names", nargs=-1, type=click.Choice(["kafka", "postgres", "redis"]))
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Kafka nodes: 3 runs a KRaft cluster on 127.0.0.1 (for tests and trials), its "
    "topics replicated 3 times with min.insync.replicas=2.",
)
def services(action: str, names: tuple[str, ...], brokers: int | None) -> None:
    """Start, stop or inspect the local Kafka, PostgreSQL and Redis (`up` and `down` act
    on the services named, or on all three)."""
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(SERVICES_SCRIPT), action, *names]
    if brokers is not None:
        command += ["--brokers", str(brokers)]
    completed = subprocess.run(command, env=env, check=False)  # noqa: S603
    sys.exit(completed.returncode)


@click.command()
@output_option
def smoke(output: str) -> None:
    """Round-trip data through Kafka, PostgreSQL and Redis and say what happened (exit 3
    if any of them fails)."""
    from stepstream.cli.smoke import run_smoke

    results = asyncio.run(run_smoke(load_settings()))
    if output == "json":
        print_json([vars(result) for result in results])
    else:
        for result in results:
            click.echo(result.line())
    if not all(result.ok for result in results):
        sys.exit(ExitCode.UNAVAILABLE)


@click.command("run")
def run_demo() -> None:
    """The main job: a worker runs the reference workflow, followed live."""
    from stepstream.demo.run import run_demo as demo

    sys.exit(asyncio.run(demo(load_settings())))


def parse_roles(context: click.Context, parameter: click.Parameter, value: str) -> frozenset[str]:
    roles = frozenset(role.strip() for role in value.split(",") if role.strip())
    unknown = sorted(roles - set(ROLES))
    if unknown or not roles:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none given'}: the roles are {', '.join(ROLES)}"
        )
    return roles


@click.command()
@click.option("--name", default=None, help="Worker name (default: host-pid).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Table store directory (default: /var/tmp/stepstream/workers/NAME).",
)
@click.option("--concurrency", default=32, show_default=True, help="Steps run at once.")
@click.option("--store", default="rocksdb://", show_default=True, help="Faust table store.")
@click.option("--loglevel", default="warn", show_default=True)
@click.option(
    "--steps",
    "step_modules",
    multiple=True,
    help="A module defining step packages (repeatable); installed ones load by themselves.",
)
@click.option(
    "--roles",
    default=",".join(ROLES),
    show_default=True,
    callback=parse_roles,
    help="What this process runs, comma-separated: coordinator (the intake and the "
    "coordinator, with their tables), executor, persister.",
)
def worker(
    name: str | None,
    data_dir: Path | None,
    concurrency: int,
    store: str,
    loglevel: str,
    step_modules: tuple[str, ...],
    roles: frozenset[str],
) -> None:
    """Run a worker: intake and coordinator (faust agents), executor and persister, with
    the built-in steps and every step package installed or named with --steps. With
    --roles, a process runs part of them: e.g. one `--roles coordinator` and one
    `--roles executor,persister`, each on a core of its own."""
    from stepstream.streams.engine import WorkerOptions, default_data_dir
    from stepstream.worker import run_worker

    settings = load_settings()
    name = name or f"{os.uname().nodename}-{os.getpid()}"
    options = WorkerOptions(name, data_dir or default_data_dir(name), store, concurrency, roles)
    run_worker(settings, options, loglevel, step_modules)


@click.group()
def topics() -> None:
    """Kafka topics of STEPSTREAM_TOPIC_PREFIX."""


@topics.command("create")
def topics_create() -> None:
    """Create the engine's topics that are missing, with STEPSTREAM_TOPIC_PARTITIONS
    partitions and STEPSTREAM_REPLICATION_FACTOR replicas (a worker does it too)."""
    from stepstream.streams.kafka_access import kafka_access
    from stepstream.streams.topics import TopicNames, declare_topics

    settings = load_settings()
    names = TopicNames.for_prefix(settings.topic_prefix)
    run(declare_topics(kafka_access(settings), settings))
    click.echo(f"topics of {settings.topic_prefix} exist ({len(names.all())})")


@topics.command("plan")
@output_option
def topics_plan(output: str) -> None:
    """Every topic a deployment uses, with partitions, replicas and settings: for teams
    that create topics with their own tooling (faust's are created on a coordinator's
    first start unless they exist)."""
    from stepstream.streams.topic_plan import plan_topics

    plan = plan_topics(load_settings())
    if output == "json":
        print_json([spec.as_json() for spec in plan])
        return
    for spec in plan:
        configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items())) or "-"
        click.echo(
            f"{spec.name:<50} {spec.partitions:>3} partitions  RF {spec.replication_factor}"
            f"  {configs}  ({spec.created_by}: {spec.purpose})"
        )


@topics.command("acls")
@click.argument("role", type=click.Choice(["worker", "producer", "consumer"]))
@click.argument("principal")
@click.option("--group", default="", help="A consumer's group (default <prefix>-downstream).")
def topics_acls(role: str, principal: str, group: str) -> None:
    """The least ACLs a worker, a producer or a downstream consumer needs, as
    kafka-acls.sh commands (PRINCIPAL: e.g. User:worker, or User:CN=worker for mTLS)."""
    from stepstream.streams.acls import acls_for

    settings = load_settings()
    for acl in acls_for(role, settings.topic_prefix, group):
        click.echo(acl.command(principal, settings.kafka_bootstrap_servers))


@topics.command("check")
@output_option
def topics_check(output: str) -> None:
    """Compare the cluster's topics with the plan: partitions, replicas,
    min.insync.replicas, cleanup policy. Each difference comes with its fix; exit 1 when
    there is one."""
    from stepstream.streams.kafka_access import kafka_access
    from stepstream.streams.topic_check import check_topics
    from stepstream.streams.topic_plan import plan_topics

    settings = load_settings()
    findings = run(check_topics(kafka_access(settings), plan_topics(settings)))
    if output == "json":
        print_json([vars(finding) for finding in findings])
    else:
        for finding in findings:
            click.echo(finding.line())
        if not findings:
            click.echo(f"every topic of {settings.topic_prefix} is as planned")
    if findings:
        sys.exit(ExitCode.FAILED)


@click.group()
def db() -> None:
    """PostgreSQL: migrations and demo data."""


@db.command("migrate")
@output_option
def db_migrate(output: str) -> None:
    """Apply the migrations that are missing (idempotent)."""
    import asyncpg

    from stepstream.infra.db import migrate

    async def go() -> list[str]:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            return await migrate(connection)
        finally:
            await connection.close()

    applied = run(go())
    if output == "json":
        print_json({"applied": applied})
    else:
        click.echo(f"applied {', '.join(applied)}" if applied else "database is up to date")


@db.command("seed")
def db_seed() -> None:
    """Load the demo properties, assets and technicians (once)."""
    import asyncpg

    from stepstream.demo.data import seed

    async def go() -> bool:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            return await seed(connection)
        finally:
            await connection.close()

    click.echo("demo data loaded" if run(go()) else "demo data already present")


@click.command()
@output_option
def stats(output: str) -> None:
    """The seed's four figures beside their targets, then every cache's requests, from
    the live workers' metrics (added up); then workflow starts per tenant (allowed,
    rejected, deferred by rate limiting), from Redis."""
    import redis.asyncio as aioredis
    from rich.console import Console
    from rich.table import Table

    from stepstream.client.figures import add_up, scrape, seed_figures
    from stepstream.infra.cache import read_rate_stats
    from stepstream.streams.announcements import read_announcements
    from stepstream.streams.events import now_ms
    from stepstream.streams.kafka_access import kafka_access
    from stepstream.streams.topics import TopicNames

    settings = load_settings()
    topic = TopicNames.for_prefix(settings.topic_prefix).workers

    async def read() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
        workers = await read_announcements(kafka_access(settings), topic)
        now = now_ms()
        texts = await scrape([w for w in workers if w.live(now)])
        client = aioredis.from_url(settings.redis_url, socket_connect_timeout=2)
        try:
            return texts, await read_rate_stats(client, settings.topic_prefix)
        finally:
            await client.aclose()

    texts, start_counts = run(read())
    samples = add_up(texts.values())
    figures = seed_figures(samples)
    caches: dict[str, dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name == "stepstream_cache_requests_total":
            found = dict(labels)
            caches.setdefault(found["cache"], {})[found["result"]] = value
    if output == "json":
        print_json(
            {
                "workers": sorted(texts),
                "figures": [vars(figure) for figure in figures],
                "caches": caches,
                "starts": start_counts,
            }
        )
        return
    table = Table(title=f"the seed's figures ({len(texts)} live workers, since they started)")
    for column in ("figure", "value", "target", ""):
        table.add_column(column)
    for figure in figures:
        verdict = {True: "ok", False: "OFF TARGET", None: ""}[figure.met]
        table.add_row(figure.name, figure.shown(), figure.target, verdict)
    Console().print(table)
    cache_table = Table(title="cache requests")
    for column in ("cache", "hit", "miss", "bypass"):
        cache_table.add_column(column)
    for name, counts in sorted(caches.items()):
        cache_table.add_row(name, *(f"{counts.get(r, 0):.0f}" for r in ("hit", "miss", "bypass")))
    Console().print(cache_table)
    starts_table = Table(title="workflow starts per tenant (rate limiting)")
    outcomes = ("allowed", "rejected", "deferred")
    for column in ("tenant", *outcomes):
        starts_table.add_column(column)
    for tenant, totals in sorted(start_counts.items()):
        starts_table.add_row(tenant, *(str(totals.get(outcome, 0)) for outcome in outcomes))
    Console().print(starts_table)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8420, show_default=True, help="Port to listen on.")
def console(host: str, port: int) -> None:
    """Serve the operator console: executions (filtered, paginated), each one's live graph,
    timeline and attempts, why its steps wait, actions (retry, rerun from a step, resume,
    cancel, bulk retry), tasks, dead letters and redrive, analytics and figures. Users
    sign in (`stepstream users add`) and see only their tenants."""
    from stepstream.console.server import run_console

    settings = load_settings()
    click.echo(f"console on http://{host}:{port}/ (sign in as a user of `stepstream users`)")
    run_console(settings, host, port)
