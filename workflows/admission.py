"""The intake's verdicts on a start request, and the checks that need no state.

A request is screened first (is it well formed, was its id started before), then its
definition is resolved, then its input is checked against it; only then do the rate
limits and the deferred queues decide (`stepstream.agents.admission`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.requests import check_start


class Verdict(StrEnum):
    ADMIT = "admit"  # record the start, emit WorkflowStarted
    READMIT = "readmit"  # started before: emit the same WorkflowStarted again (rule 2)
    DEFER = "defer"  # over a limit with the defer policy, or behind the user's queue
    REJECT = "reject"  # WorkflowRejected with the code and reason


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    code: str | None = None
    reason: str | None = None
    limit: str | None = None
    reset_at_ms: int | None = None
    pinned_version: int = 0  # READMIT: the version its first start pinned


ADMIT = Admission(Verdict.ADMIT)


def rejection(
    code: str, reason: str, limit: str | None = None, reset_at_ms: int | None = None
) -> Admission:
    return Admission(Verdict.REJECT, code, reason, limit, reset_at_ms)


def screen(request: dict[str, Any], started: Any, max_input_bytes: int) -> Admission | None:
    """Reject a malformed request; readmit one whose id was started (`started`, its row:
    [started at, pinned version]); None when its definition must be resolved next."""
    invalid = check_start(
        request["execution_id"],
        request["workflow_id"],
        request["tenant_id"],
        request["user_id"],
        request["input_json"],
        max_input_bytes,
    )
    if invalid is not None:
        return rejection(invalid.code, invalid.reason, invalid.limit)
    if started is not None:
        pinned = started[1] if isinstance(started, list) else request["workflow_version"]
        return Admission(Verdict.READMIT, pinned_version=pinned)
    return None


def check_input(request: dict[str, Any], definition: WorkflowDefinition | None) -> Admission | None:
    """Reject a start of an unknown workflow or one whose input is not a JSON object."""
    if definition is None:
        wanted = request["workflow_version"] or "latest"
        return rejection(
            "unknown_workflow",
            f"workflow {request['workflow_id']!r} version {wanted} is not registered",
        )
    try:
        workflow_input = json.loads(request["input_json"])
    except json.JSONDecodeError as error:
        return rejection("invalid_input", f"input is not JSON: {error}")
    if not isinstance(workflow_input, dict):
        return rejection("invalid_input", "input must be a JSON object")
    return None


def check_nesting(request: dict[str, Any], max_depth: int) -> Admission | None:
    """Reject a sub-workflow's child nested deeper than WORKFLOW_MAX_NESTING_DEPTH: a
    definition that calls itself through others (found only at run time) ends there."""
    parent = request.get("parent")
    if parent and parent["depth"] > max_depth:
        return rejection(
            "nesting_too_deep",
            f"a child at depth {parent['depth']}, over WORKFLOW_MAX_NESTING_DEPTH ({max_depth})"
            f" (started by {parent['execution_id']} step {parent['step_id']})",
            limit=f"depth {max_depth}",
        )
    return None
