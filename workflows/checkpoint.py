"""Execution state to a compact, versioned dict and back, without loss.

The dict is a table value (JSON- and Avro-friendly): short keys, steps as positional
lists. The pinned definition travels with it ("def"), or, written with
`inline_definition=False`, only its id and version ("dref"): the coordinator then keeps
each definition version once per partition beside the checkpoints (`definition_key`),
so an event's write does not carry a 1,000-step definition along.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from workflows.definition import WorkflowDefinition
from workflows.execution import ExecutionState, ExecutionStatus, Failure, StepState, StepStatus
from workflows.loading import definition_to_dict
from workflows.validation import build_definition

FORMAT_VERSION = 1

_STEP_FIELDS = (
    "status",
    "remaining",
    "attempt",
    "output",
    "error",
    "retry_at_ms",
    "ready_at_ms",
    "started_at_ms",
    "finished_at_ms",
    "base",
)


class CheckpointError(ValueError):
    """A stored checkpoint cannot be read by this version of stepstream."""


DefinitionMemo = MutableMapping[tuple[str, int], WorkflowDefinition]


DEFINITION_KEY_PREFIX = "#definition/"  # execution ids start with a letter or digit


def definition_key(workflow_id: str, version: int) -> str:
    """The table key under which a partition keeps a definition its checkpoints name."""
    return f"{DEFINITION_KEY_PREFIX}{workflow_id}/{version}"


def definition_ref(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """The (id, version) a checkpoint names instead of carrying its definition."""
    ref = data.get("dref")
    return (ref[0], ref[1]) if ref else None


def state_to_dict(state: ExecutionState, inline_definition: bool = True) -> dict[str, Any]:
    steps = {}
    for step_id, step in state.steps.items():
        values = [getattr(step, name) for name in _STEP_FIELDS]
        values[0] = str(step.status)
        values[-1] = step.base or None  # 0 for steps never retried or rerun by an operator
        while values and values[-1] is None:  # trailing unset fields cost nothing
            values.pop()
        steps[step_id] = values
    return {
        "v": FORMAT_VERSION,
        "id": state.execution_id,
        **(
            {"def": definition_to_dict(state.definition)}
            if inline_definition
            else {"dref": [state.definition.id, state.definition.version]}
        ),
        "in": dict(state.input),
        "max": state.max_outstanding,
        "st": str(state.status),
        "steps": steps,
        "q": list(state.queue),
        "out": state.outstanding,
        "done": state.completed_steps,
        "fail": [state.failure.step_id, state.failure.error] if state.failure else None,
        "t0": state.started_at_ms,
        "t1": state.finished_at_ms,
        **({"ops": list(state.replays)} if state.replays else {}),
    }


def state_from_dict(data: dict[str, Any], memo: DefinitionMemo | None = None) -> ExecutionState:
    """Read a checkpoint. `memo` caches parsed definitions by (id, version) across calls;
    a checkpoint that names its definition ("dref") without carrying it needs it there."""
    if data.get("v") != FORMAT_VERSION:
        raise CheckpointError(f"unsupported checkpoint format {data.get('v')!r}")
    try:
        raw_definition: dict[str, Any] | None = data.get("def")
        ref = definition_ref(data)
        if ref is not None:
            key = ref
        elif raw_definition is not None:
            key = (raw_definition["id"], raw_definition["version"])
        else:
            raise CheckpointError("the checkpoint has no definition")
        definition = memo.get(key) if memo is not None else None
        if definition is None:
            if raw_definition is None:
                raise CheckpointError(f"the checkpoint names definition {key}, not given")
            definition = build_definition(raw_definition)
            if memo is not None:
                memo[key] = definition
        steps = {}
        for step_id, values in data["steps"].items():
            fields = dict(zip(_STEP_FIELDS, values, strict=False))
            fields["status"] = StepStatus(fields["status"])
            fields["base"] = fields.get("base") or 0
            steps[step_id] = StepState(**fields)
        failure = data["fail"]
        return ExecutionState(
            execution_id=data["id"],
            definition=definition,
            input=data["in"],
            max_outstanding=data["max"],
            steps=steps,
            status=ExecutionStatus(data["st"]),
            queue=tuple(data["q"]),
            outstanding=data["out"],
            completed_steps=data["done"],
            failure=Failure(failure[0], failure[1]) if failure else None,
            started_at_ms=data["t0"],
            finished_at_ms=data["t1"],
            replays=tuple(data.get("ops", ())),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"malformed checkpoint: {error!r}") from error
