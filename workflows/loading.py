"""Definitions from YAML or JSON text. Reading the file is the caller's job: no I/O here."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Literal

import yaml

from stepstream.workflows.definition import (
    HumanTask,
    OnTimeout,
    Trigger,
    Wait,
    WaitFor,
    WorkflowDefinition,
)
from stepstream.workflows.durations import written_duration
from stepstream.workflows.validation import InvalidDefinition, Problem, build_definition

Format = Literal["yaml", "json"]


def format_for(filename: str) -> Format:
    return "json" if filename.lower().endswith(".json") else "yaml"


def parse_definition(
    text: str, fmt: Format = "yaml", step_types: Collection[str] | None = None
) -> WorkflowDefinition:
    """Parse and validate; syntax errors are reported like any other problem."""
    return build_definition(load_raw(text, fmt), step_types)


def load_raw(text: str, fmt: Format = "yaml") -> Any:
    """The text as data; a syntax error is reported as a problem of the file."""
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InvalidDefinition([Problem("(file)", f"not valid {fmt.upper()}: {error}")]) from None


def definition_to_dict(definition: WorkflowDefinition) -> dict[str, Any]:
    """The raw form `build_definition` reads back to an equal definition."""
    rate_limit = (
        {
            "rateLimit": {
                "points": definition.rate_limit.points,
                "windowSeconds": definition.rate_limit.window_ms // 1000,
                "policy": str(definition.rate_limit.policy),
            }
        }
        if definition.rate_limit
        else {}
    )
    return {
        **rate_limit,
        "id": definition.id,
        "version": definition.version,
        "name": definition.name,
        "defaults": {
            "retry": _retry_to_dict(definition.defaults.retry),
            "timeoutMs": definition.defaults.timeout_ms,
        },
        "steps": [
            {
                "id": step.id,
                "type": step.type,
                "dependsOn": list(step.depends_on),
                **({"retry": _retry_to_dict(step.retry)} if step.retry else {}),
                **({"timeoutMs": step.timeout_ms} if step.timeout_ms is not None else {}),
                **({"parallel": step.parallel} if step.parallel is not None else {}),
                **({"config": dict(step.config)} if step.config else {}),
                **({"queue": step.queue} if step.queue is not None else {}),
                **({"when": step.when} if step.when is not None else {}),
                **({"wait": _wait_to_dict(step.wait)} if step.wait is not None else {}),
                **(_wait_for_to_dict(step.wait_for) if step.wait_for is not None else {}),
                **(_human_to_dict(step.human) if step.human is not None else {}),
                **(step.for_each.to_dict() if step.for_each is not None else {}),
                **(step.child.to_dict() if step.child is not None else {}),
                **({"from": step.source} if step.source is not None else {}),
                **(
                    {"trigger": str(step.trigger)}
                    if step.trigger is not Trigger.NONE_FAILED
                    else {}
                ),
            }
            for step in definition.steps
        ],
    }


def _retry_to_dict(policy: Any) -> dict[str, Any]:
    return {
        "maxAttempts": policy.max_attempts,
        "initialBackoffMs": policy.initial_backoff_ms,
        "multiplier": policy.multiplier,
        "maxBackoffMs": policy.max_backoff_ms,
        "jitter": policy.jitter,
    }


def _wait_to_dict(wait: Wait) -> dict[str, Any]:
    if wait.for_ms is not None:
        return {"for": written_duration(wait.for_ms)}
    return {"until": wait.until}


def _wait_for_to_dict(wait_for: WaitFor) -> dict[str, Any]:
    spec: dict[str, Any] = {"event": wait_for.event}
    if wait_for.correlation_key is not None:
        spec["correlationKey"] = wait_for.correlation_key
    return _with_timeout("waitFor", spec, wait_for)


def _human_to_dict(human: HumanTask) -> dict[str, Any]:
    spec: dict[str, Any] = {"form": dict(human.form)}
    if human.assignee is not None:
        spec["assignee"] = human.assignee
    if human.title is not None:
        spec["title"] = human.title
    return _with_timeout("human", spec, human)


def _with_timeout(field: str, spec: dict[str, Any], limit: WaitFor | HumanTask) -> dict[str, Any]:
    if limit.timeout_ms is None:
        return {field: spec}
    spec["timeout"] = written_duration(limit.timeout_ms)
    if limit.on_timeout is OnTimeout.FAIL:
        return {field: spec}
    return {field: spec, "onTimeout": str(limit.on_timeout)}
