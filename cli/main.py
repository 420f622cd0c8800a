"""The `stepstream` command line: the commands, grouped by what they act on.

Exit codes (cli/errors.py): 0 ok, 1 the workflow failed or was rejected, 2 invalid input,
3 a service unavailable, 124 --timeout passed. Expected failures print one line.
"""

from __future__ import annotations

import logging

import click

from stepstream.cli.analytics import analytics
from stepstream.cli.definitions import plan_command, register
from stepstream.cli.errors import Commands
from stepstream.cli.events import events
from stepstream.cli.executions import describe, list_command, start, status
from stepstream.cli.local import console, db, run_demo, services, smoke, stats, topics, worker
from stepstream.cli.operators import cancel, dead_letters, explain, replay, stalled, workers
from stepstream.cli.tasks import tasks
from stepstream.cli.users import users


@click.group(cls=Commands)
@click.version_option(package_name="stepstream", message="%(prog)s %(version)s")
@click.pass_context
def main(context: click.Context) -> None:
    """stepstream: DAG workflows as event streams on Apache Kafka."""
    if context.invoked_subcommand != "worker":  # a worker sets up its own logging
        # The clients' own error logs (aiokafka logs each failed connection) would only
        # repeat, before it, what the one line says.
        logging.getLogger().setLevel(logging.CRITICAL)


for command in (
    # running it
    services,
    worker,
    run_demo,
    smoke,
    db,
    topics,
    # definitions
    plan_command,
    register,
    # executions
    start,
    status,
    describe,
    list_command,
    events,
    tasks,
    # operators
    replay,
    cancel,
    explain,
    stalled,
    dead_letters,
    workers,
    stats,
    analytics,
    console,
    users,
):
    main.add_command(command)
