"""Human tasks, as a person's tools see them (the CLI, the console, a team's own app):
list the open ones, and answer one. An answer is checked against the task's form here,
so a person sees what is wrong at once; the coordinator checks it again, since anyone
who can write to Kafka may send one (README "Human tasks")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stepstream.client.watch import read_checkpoint
from stepstream.infra.human_tasks import HumanTaskRecord, find_task, open_tasks
from stepstream.schemas.codec import CODEC
from stepstream.streams.events import event_id, now_ms
from stepstream.workflows import ExecutionStatus, StepStatus, state_from_dict
from stepstream.workflows.forms import answer_errors

if TYPE_CHECKING:
    from stepstream.client.workflow_client import WorkflowClient


class AnswerRefused(ValueError):
    """An answer the client will not send: the task is not open, or the answer does not
    match its form (`errors` says where)."""

    def __init__(self, reason: str, errors: list[str] | None = None) -> None:
        super().__init__(reason)
        self.errors = errors or []


class HumanTasks:
    """`client.tasks`: the open tasks (from PostgreSQL) and answers (to Kafka)."""

    def __init__(self, client: WorkflowClient) -> None:
        self.client = client

    async def open(
        self, tenant_id: str | None = None, assignee: str | None = None, limit: int = 100
    ) -> list[HumanTaskRecord]:
        """Open tasks, oldest first; with `assignee`, theirs and the unassigned ones."""
        return await open_tasks(await self.client.database(), tenant_id, assignee, limit=limit)

    async def find(self, execution_id: str, step_id: str) -> HumanTaskRecord | None:
        """The step's latest task as recorded, open or not."""
        return await find_task(await self.client.database(), execution_id, step_id)

    async def answer(
        self,
        execution_id: str,
        step_id: str,
        answer: Mapping[str, Any] | list[Any] | str | float | bool | None,
        answered_by: str,
    ) -> int:
        """Answer the step's open task; returns the attempt answered. Raises AnswerRefused
        (nothing is sent) when the task is not open or the answer does not match the
        form. The execution's checkpoint says which attempt is open and what its form is,
        so an answer is never sent to a task that has moved on."""
        if not answered_by.strip():
            raise AnswerRefused("say who answers (answered_by)")
        stored = await read_checkpoint(self.client.settings, execution_id)
        if stored is None:
            raise AnswerRefused(f"no execution {execution_id} in the engine")
        state = state_from_dict(stored["state"])
        step = state.steps.get(step_id)
        definition = state.definition.step_by_id.get(step_id)
        if step is None or definition is None or definition.human is None:
            raise AnswerRefused(f"step {step_id!r} of {state.definition.id} is not a human task")
        if state.status is not ExecutionStatus.RUNNING or step.status is not StepStatus.RUNNING:
            ended = step.worker or step.error or "its timeout"
            detail = f" (answered by {ended})" if step.status is StepStatus.COMPLETED else ""
            raise AnswerRefused(
                f"the task {execution_id}/{step_id} is not open: the step is {step.status}"
                f"{detail}, the execution {state.status}"
            )
        errors = answer_errors(state.definition.forms[step_id], answer)
        if errors:
            raise AnswerRefused("the answer does not match the form: " + "; ".join(errors), errors)
        record = {
            **stored["origin"],
            "event_id": event_id(execution_id, "answer", step_id, step.attempt, uuid.uuid4()),
            "timestamp": now_ms(),
            "step_id": step_id,
            "attempt": step.attempt,
            "answer_json": json.dumps(answer, separators=(",", ":")),
            "answered_by": answered_by.strip(),
        }
        await self.client.send_raw(
            self.client.names.executions,
            CODEC.encode("TaskAnswered", record),
            key=execution_id.encode(),
        )
        return step.attempt
