"""Operators' commands: recover executions (`replay`, `stalled`) and events (`dead-letters`),
and see who serves what (`workers`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from stepstream.cli.errors import ExitCode, invalid
from stepstream.cli.support import load_settings, output_option, print_json, run


@click.command()
@click.argument("execution_id")
@click.argument("action", type=click.Choice(["resume", "retry", "rerun-from"]))
@click.option("--step", "step_id", default=None, help="For rerun-from: the step to run again.")
@click.option("--by", "requested_by", default="", help="Who asks (for the audit trail).")
@click.option("--reason", default="", help="Why (for the audit trail).")
@click.option("--request-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--wait", is_flag=True, help="Wait until the execution ends again.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds for the whole command.")
@output_option
def replay(
    execution_id: str,
    action: str,
    step_id: str | None,
    requested_by: str,
    reason: str,
    request_id: str | None,
    wait: bool,
    timeout: float,
    output: str,
) -> None:
    """Resume a stuck EXECUTION_ID, retry a failed one, or rerun one from a step."""
    if (action == "rerun-from") != (step_id is not None):
        raise invalid("--step is required with rerun-from, and only with it")
    request = Request(execution_id, action, step_id, requested_by, reason, request_id)
    sys.exit(run(request.send(wait, timeout, output), timeout))


@click.command()
@click.argument("execution_id")
@click.option("--reason", required=True, help="Why (recorded, and in the outcome event).")
@click.option("--by", "requested_by", default="", help="Who asks (for the audit trail).")
@click.option("--request-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--wait", is_flag=True, help="Wait until the execution has ended as cancelled.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds for the whole command.")
@output_option
def cancel(
    execution_id: str,
    reason: str,
    requested_by: str,
    request_id: str | None,
    wait: bool,
    timeout: float,
    output: str,
) -> None:
    """End EXECUTION_ID as cancelled: nothing new starts; steps still running may finish,
    and their reports are recorded but change nothing. Exit 2 if it has ended already."""
    request = Request(execution_id, "cancel", None, requested_by, reason, request_id)
    sys.exit(run(request.send(wait, timeout, output, success="cancelled"), timeout))


@dataclass(frozen=True)
class Request:
    """An operator's request to the coordinator, through the replay topic."""

    execution_id: str
    action: str
    step_id: str | None
    requested_by: str
    reason: str
    request_id: str | None

    async def send(
        self, wait: bool, timeout: float, output: str, success: str = "completed"
    ) -> int:
        """Publish it; with `wait`, until the run it opens ends (exit 0 if as `success`)."""
        from stepstream.client import ReplayRefused, WorkflowClient
        from stepstream.workflows import ReplayAction

        execution_id, action = self.execution_id, self.action
        async with WorkflowClient(load_settings(), follow_outcomes=wait) as client:
            try:
                run_number = await client.replay(
                    execution_id,
                    ReplayAction(action),
                    self.step_id,
                    self.requested_by,
                    self.reason,
                    self.request_id,
                )
            except ReplayRefused as refused:
                raise invalid(str(refused)) from None
            answer: dict[str, object] = {"execution_id": execution_id, "run": run_number}
            if not wait:
                await client.flush()
                line = f"{execution_id}: {action} requested (run {run_number})"
                code = ExitCode.OK
            else:
                outcome = await client.wait_for(execution_id, timeout, run=run_number)
                answer["status"] = outcome.status
                line = f"{execution_id}: run {run_number} {outcome.status}"
                code = ExitCode.OK if outcome.status == success else ExitCode.FAILED
            if output == "json":
                print_json({"action": action, **answer})
            else:
                click.echo(line)
            return code


@click.command("dead-letters")
@click.option("--source-topic", default=None, help="Only letters from this topic.")
@click.option("--execution-id", default=None, help="Only letters of this execution.")
@click.option("--redrive", is_flag=True, help="Publish them again to their topics, once.")
@click.option("--again", is_flag=True, help="With --redrive: also letters re-driven before.")
@output_option
def dead_letters(
    source_topic: str | None, execution_id: str | None, redrive: bool, again: bool, output: str
) -> None:
    """List dead letters; with --redrive, publish their original bytes again to their
    topics, once the cause is fixed (every consumer is idempotent). A letter is re-driven
    once: later runs skip it and say so (PostgreSQL remembers), unless --again."""
    from stepstream.client import dead_letters as letters_module

    settings = load_settings()
    letters = run(letters_module.read_letters(settings, source_topic, execution_id))
    result = run(letters_module.redrive(settings, letters, again)) if redrive else None
    if output == "json":
        sent = {letter.letter_id for letter in result.sent} if result else set()
        print_json(
            [
                {
                    "letter": letter.letter_id,
                    "execution_id": letter.execution_id,
                    "error": letter.error,
                    "redriven_now": letter.letter_id in sent,
                }
                for letter in letters
            ]
        )
        return
    for letter in letters:
        click.echo(f"{letter.letter_id} {letter.execution_id or '-'}: {letter.error}")
    if result is not None:
        click.echo(f"re-driven {len(result.sent)} dead letter(s)")
        if result.skipped:
            click.echo(
                f"skipped {len(result.skipped)} re-driven before (--again sends them once more)"
            )
    elif not letters:
        click.echo("no dead letters")


@click.command()
@click.option(
    "--all", "show_all", is_flag=True, help="Every running execution, not only stalled ones."
)
@output_option
def stalled(show_all: bool, output: str) -> None:
    """Executions with outstanding steps and no progress beyond those steps' timeouts
    plus WORKFLOW_WATCHDOG_MARGIN_MS, with what each waits for, and start requests with
    no outcome past that margin. Workers' watchdogs announce both again on their own;
    this shows what they are looking at."""
    from stepstream.client.watch import read_checkpoints, stalled_starts
    from stepstream.streams.events import now_ms
    from stepstream.workflows import state_from_dict
    from stepstream.workflows.stalls import waiting_on

    settings = load_settings()
    now = now_ms()
    shown = {}
    for execution_id, checkpoint in sorted(run(read_checkpoints(settings)).items()):
        waiting = waiting_on(state_from_dict(checkpoint["state"]), settings.watchdog_margin_ms)
        if waiting and (show_all or waiting[0].deadline_ms <= now):
            shown[execution_id] = [w.describe(now) for w in waiting]
    for start in run(stalled_starts(settings, now)):
        shown[start.execution_id] = [
            f"start requested {(now - start.requested_at_ms) // 1000} s ago, not started"
            f" (workflow-start/{start.partition}/{start.offset})"
        ]
    if output == "json":
        print_json(shown)
    elif shown:
        for execution_id, waits in shown.items():
            click.echo(f"{execution_id}: " + "; ".join(waits))
    else:
        click.echo("no stalled executions" if not show_all else "no running executions")


@click.command()
@click.option(
    "--all", "show_all", is_flag=True, help="Also workers not heard of for three intervals."
)
@output_option
def workers(show_all: bool, output: str) -> None:
    """The workers and what they serve: step types, task queues, when last heard of.
    Workers announce themselves every few seconds (stepstream workers and external ones
    alike, on <prefix>.workers); one that stopped cleanly is not listed."""
    from stepstream.streams.announcements import read_announcements
    from stepstream.streams.events import now_ms
    from stepstream.streams.kafka_access import kafka_access
    from stepstream.streams.topics import TopicNames

    settings = load_settings()
    topic = TopicNames.for_prefix(settings.topic_prefix).workers
    now = now_ms()
    listed = [
        a for a in run(read_announcements(kafka_access(settings), topic)) if show_all or a.live(now)
    ]
    if output == "json":
        print_json([{**a.record(), "live": a.live(now)} for a in listed])
        return
    if not listed:
        click.echo("no live workers" if not show_all else "no workers")
    for a in listed:
        serves = [*(["steps without a queue"] if a.builtin_executor else []), *a.queues]
        click.echo(
            f"{a.worker}: {'live' if a.live(now) else 'gone'}, seen"
            f" {(now - a.seen_at_ms) / 1000:.0f} s ago; serves {', '.join(serves) or 'nothing'};"
            f" types {', '.join(a.step_types) or ('any' if serves else '-')}"
        )


@click.command()
@click.argument("execution_id")
@click.argument("step_id", required=False)
@output_option
def explain(execution_id: str, step_id: str | None, output: str) -> None:
    """Why each unfinished step of EXECUTION_ID is not running (or STEP_ID's state): what
    it waits on, its retry time, the parallel limit, why it was skipped. Read from the
    execution's checkpoint."""
    from stepstream.client.watch import read_checkpoint
    from stepstream.streams.events import now_ms
    from stepstream.workflows import state_from_dict
    from stepstream.workflows.explain import explain as explain_state

    stored = run(read_checkpoint(load_settings(), execution_id))
    if stored is None:
        raise invalid(f"no checkpoint for execution {execution_id}")
    state = state_from_dict(stored["state"])
    if step_id is not None and step_id not in state.steps:
        raise invalid(
            f"execution {execution_id} has no step {step_id!r} ({', '.join(state.steps)})"
        )
    answers = explain_state(state, now_ms(), step_id)
    if output == "json":
        print_json({"execution_id": execution_id, "status": str(state.status), "steps": answers})
        return
    click.echo(f"{execution_id}: {state.status}")
    for answer_step, answer in answers.items():
        click.echo(f"  {answer_step}: {answer}")
