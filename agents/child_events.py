"""Sub-workflows on Kafka: a child's start is a WorkflowStartRequested like any producer's
(the intake dedupes it by the child's id, rate-limits it and pins its definition), a
parent's cancel reaches its child as a ReplayRequested, and a child's outcome reaches its
parent's partition as a ChildEnded (sent again with the outcome after a redelivery,
delivery rule 2: the same event id)."""

from __future__ import annotations

from typing import Any

from stepstream.streams.events import event_id, from_json, now_ms, to_json
from stepstream.streams.topics import TopicNames
from stepstream.workflows import (
    CancelChild,
    CancelWorkflow,
    ChildEnded,
    CompleteWorkflow,
    ExecutionState,
    FailWorkflow,
    StartChild,
)

Outgoing = tuple[str, str, str, dict[str, Any]]  # as coordinator_events': topic, key, name, record


def child_start(
    names: TopicNames, state: ExecutionState, origin: dict[str, Any], command: StartChild
) -> Outgoing:
    """The child's start request: the parent's tenant and user, one level deeper."""
    depth = (origin.get("parent") or {}).get("depth", 0) + 1
    record = {
        "event_id": event_id(command.child_id, "start-requested"),
        "execution_id": command.child_id,
        "workflow_id": command.workflow_id,
        "workflow_version": command.version,
        "tenant_id": origin["tenant_id"],
        "user_id": origin["user_id"],
        "timestamp": now_ms(),
        "input_json": to_json(command.input),
        "parent": {
            "execution_id": state.execution_id,
            "step_id": command.step_id,
            "attempt": command.attempt,
            "depth": depth,
        },
    }
    return names.workflow_start, origin["tenant_id"], "WorkflowStartRequested", record


def child_cancel(names: TopicNames, origin: dict[str, Any], command: CancelChild) -> Outgoing:
    """An operator's cancel, made by the parent: the child ends as cancelled (a child that
    ended already ignores it)."""
    record = {
        "event_id": event_id(command.child_id, "cancel-by-parent"),
        "execution_id": command.child_id,
        "workflow_id": "",
        "workflow_version": 0,
        "tenant_id": origin["tenant_id"],
        "user_id": origin["user_id"],
        "timestamp": now_ms(),
        "request_id": f"parent-cancel:{command.child_id}",
        "action": "cancel",
        "step_id": None,
        "requested_by": f"parent:{origin['execution_id']}",
        "reason": command.reason,
    }
    return names.replay, command.child_id, "ReplayRequested", record


def child_ended(
    names: TopicNames,
    origin: dict[str, Any],
    status: str,
    outputs: Any = None,
    error: str | None = None,
    run: int = 0,
) -> Outgoing | None:
    """The ChildEnded a child's outcome sends its parent; None for a top-level execution.
    `run` counts an operator's re-openings of the child: each run's outcome is news."""
    parent = origin.get("parent")
    if not parent:
        return None
    record = {
        "event_id": event_id(origin["execution_id"], "child-ended", run),
        "execution_id": parent["execution_id"],
        "tenant_id": origin["tenant_id"],
        "timestamp": now_ms(),
        "step_id": parent["step_id"],
        "attempt": parent["attempt"],
        "child_id": origin["execution_id"],
        "child_workflow_id": origin["workflow_id"],
        "status": status,
        "outputs_json": None if outputs is None else to_json(outputs),
        "error": error,
    }
    return names.executions, parent["execution_id"], "ChildEnded", record


def outcome_to_parent(
    names: TopicNames,
    state: ExecutionState,
    origin: dict[str, Any],
    command: CompleteWorkflow | FailWorkflow | CancelWorkflow,
) -> Outgoing | None:
    """What a child's outcome tells its parent."""
    run = state.generation
    match command:
        case CompleteWorkflow():
            return child_ended(names, origin, "completed", dict(command.outputs), run=run)
        case FailWorkflow():
            error = f"step {command.step_id} failed: {command.error}"
            return child_ended(names, origin, "failed", error=error, run=run)
        case CancelWorkflow():
            return child_ended(names, origin, "cancelled", error=command.reason, run=run)
    return None


def core_child_ended(record: dict[str, Any]) -> ChildEnded:
    outputs = record["outputs_json"]
    return ChildEnded(
        record["step_id"],
        record["attempt"],
        record["child_id"],
        record["status"],
        None if outputs is None else from_json(outputs),
        record["error"],
        at_ms=now_ms(),
    )
