"""Execution state to a compact, versioned dict and back, without loss.

The dict is a table value (JSON- and Avro-friendly): short keys, steps as positional
lists. The pinned definition travels with it ("def"), or, written with
`inline_definition=False`, only its id and version ("dref"): the coordinator then keeps
each definition version once per partition beside the checkpoints (`definition_key`),
so an event's write does not carry a 1,000-step definition along.

Large executions (more than STEPS_PER_PART steps) are split, so that what an event
writes depends on what it changed, not on the workflow's size: the steps live in parts
of STEPS_PER_PART steps under their own keys (`part_key`), and the checkpoint itself
(the header) carries only the steps changed since they were last folded into the parts
(its "delta", at most DELTA_LIMIT). See `checkpoint_writes` for why every prefix of a
write reads back as the state before it or the state after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.execution import (
    ExecutionState,
    ExecutionStatus,
    Failure,
    StepState,
    StepStatus,
)
from stepstream.workflows.fan_out import (
    DEFAULT_MAX_ITEMS,
    MAX_ITEMS_LIMIT,
    FanProgress,
    split_instance,
)
from stepstream.workflows.loading import definition_to_dict
from stepstream.workflows.validation import build_definition

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
    "alive_at_ms",
    "worker",
    "timed_out",
    "due_at_ms",
    "fan",
)
_BASE = _STEP_FIELDS.index("base")
_FAN = _STEP_FIELDS.index("fan")


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


def step_to_list(step: StepState) -> list[Any]:
    values = [getattr(step, name) for name in _STEP_FIELDS]
    values[0] = str(step.status)
    values[_BASE] = step.base or None  # 0 for steps never retried or rerun by an operator
    if step.fan is not None:
        values[_FAN] = list(step.fan)  # a plain list: JSON encoders differ on named tuples
    while values and values[-1] is None:  # trailing unset fields cost nothing
        values.pop()
    return values


def state_to_dict(
    state: ExecutionState, inline_definition: bool = True, step_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """The state as a dict; with `step_ids`, only those steps (a split checkpoint's
    header, which then also says how many parts hold the others)."""
    queue: list[str] | None = list(state.queue)
    if step_ids is None:
        steps = {step_id: step_to_list(step) for step_id, step in state.steps.items()}
        parts = {}
    else:
        steps = {step_id: step_to_list(state.steps[step_id]) for step_id in step_ids}
        parts = {"parts": len(parts_of(state.definition))}
        if state.definition.fan_outs:
            parts["fans"] = len(state.definition.fan_outs)
        # Left out: read back from the steps' statuses (`implied_queue`; a fan-out's queue
        # is most of its steps). The reducer keeps the queue so; the property tests of
        # split checkpoints check it for every kind of transition.
        queue = None
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
        "q": queue,
        "out": state.outstanding,
        "done": state.completed_steps,
        "fail": [state.failure.step_id, state.failure.error] if state.failure else None,
        "t0": state.started_at_ms,
        "t1": state.finished_at_ms,
        **({"ops": list(state.replays)} if state.replays else {}),
        **({"skip": state.skipped_steps} if state.skipped_steps else {}),
        **({"why": state.cancel_reason} if state.cancel_reason is not None else {}),
        **parts,
        **({"maxi": state.max_items} if state.max_items != DEFAULT_MAX_ITEMS else {}),
    }


def implied_queue(
    definition: WorkflowDefinition, steps: Mapping[str, StepState], status: ExecutionStatus
) -> tuple[str, ...]:
    """The queue as the reducer keeps it: a running execution's queued steps in plan
    order (a failed one keeps its queued steps but no queue)."""
    if status is not ExecutionStatus.RUNNING:
        return ()
    return tuple(i for i in definition.graph.order if steps[i].status is StepStatus.QUEUED)


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
        missing = definition.step_by_id.keys() - data["steps"].keys()
        if missing:  # a part lost, or a header that names parts never written
            raise CheckpointError(f"checkpoint {data.get('id')!r} lacks steps {sorted(missing)}")
        steps = {}
        for step_id, values in data["steps"].items():
            fields = dict(zip(_STEP_FIELDS, values, strict=False))
            fields["status"] = StepStatus(fields["status"])
            fields["base"] = fields.get("base") or 0
            if fields.get("fan") is not None:
                fields["fan"] = FanProgress(*fields["fan"])
            steps[step_id] = StepState(**fields)
        failure = data["fail"]
        status = ExecutionStatus(data["st"])
        queue = (
            tuple(data["q"]) if data["q"] is not None else implied_queue(definition, steps, status)
        )
        return ExecutionState(
            execution_id=data["id"],
            definition=definition,
            input=data["in"],
            max_outstanding=data["max"],
            steps=steps,
            status=status,
            queue=queue,
            outstanding=data["out"],
            completed_steps=data["done"],
            failure=Failure(failure[0], failure[1]) if failure else None,
            started_at_ms=data["t0"],
            finished_at_ms=data["t1"],
            replays=tuple(data.get("ops", ())),
            skipped_steps=data.get("skip", 0),
            cancel_reason=data.get("why"),
            max_items=data.get("maxi", DEFAULT_MAX_ITEMS),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"malformed checkpoint: {error!r}") from error


STEPS_PER_PART = 64
DELTA_LIMIT = 64  # changed steps a header carries before they are folded into the parts
PART_SEPARATOR = "#"  # "<execution id>#<part>": execution ids never contain "#"

_parts_cache: dict[tuple[str, int], tuple[tuple[str, ...], ...]] = {}


def parts_of(definition: WorkflowDefinition) -> tuple[tuple[str, ...], ...]:
    """The step ids of each part, in definition order (fixed for a definition version)."""
    key = (definition.id, definition.version)
    parts = _parts_cache.get(key)
    if parts is None:
        # A fan-out step changes with every instance: a part of its own, so that folding
        # it does not write its neighbours again (a `read` step's long list, say).
        ids = [step.id for step in definition.steps if step.for_each is None]
        parts = tuple(
            tuple(ids[start : start + STEPS_PER_PART])
            for start in range(0, len(ids), STEPS_PER_PART)
        ) + tuple((step_id,) for step_id in definition.fan_outs)
        _parts_cache[key] = parts
    return parts


def is_split(definition: WorkflowDefinition) -> bool:
    """Large workflows, and every one with a fan-out (whose instances may be thousands),
    keep their steps in parts."""
    return len(definition.steps) > STEPS_PER_PART or bool(definition.fan_outs)


# A fan-out's instances are kept in parts of their own, STEPS_PER_PART instances each,
# numbered after the definition's parts: a fan-out's parts are a prefix of its range
# (instances are released in item order, and a fold writes every part its delta
# touches), so a reader finds them by reading on until the first one that is absent.
CHUNKS_PER_FAN_OUT = MAX_ITEMS_LIMIT // STEPS_PER_PART + 1


def instance_part(definition_parts: int, fan_out: int, chunk: int) -> int:
    """The part number of chunk `chunk` of the `fan_out`-th fan-out step's instances."""
    return definition_parts + fan_out * CHUNKS_PER_FAN_OUT + chunk


def part_of(definition: WorkflowDefinition, step_id: str) -> int:
    """The part a step's or an instance's state is folded into."""
    split = split_instance(step_id)
    if split is None:
        return _part_index(definition)[step_id]
    parent, index = split
    ordinal = definition.fan_outs.index(parent)
    return instance_part(len(parts_of(definition)), ordinal, index // STEPS_PER_PART)


_part_index_cache: dict[tuple[str, int], dict[str, int]] = {}


def _part_index(definition: WorkflowDefinition) -> dict[str, int]:
    key = (definition.id, definition.version)
    index = _part_index_cache.get(key)
    if index is None:
        index = {i: n for n, ids in enumerate(parts_of(definition)) for i in ids}
        _part_index_cache[key] = index
    return index


def stored_parts(
    header: Mapping[str, Any], read: Callable[[int], Mapping[str, Any] | None]
) -> dict[int, Mapping[str, Any] | None]:
    """The parts a split header stands on, read with `read(part number)` (None: absent):
    the definition's, then each fan-out's up to its first absent part."""
    count = header.get("parts", 0)
    parts = {n: read(n) for n in range(count)}
    for fan_out in range(header.get("fans", 0)):
        chunk = 0
        while (part := read(instance_part(count, fan_out, chunk))) is not None:
            parts[instance_part(count, fan_out, chunk)] = part
            chunk += 1
    return parts


def part_key(execution_id: str, part: int) -> str:
    return f"{execution_id}{PART_SEPARATOR}{part}"


def split_part_key(key: str) -> tuple[str, int] | None:
    """(execution id, part number) for a part's key; None for any other key."""
    execution_id, separator, part = key.rpartition(PART_SEPARATOR)
    if not separator or not execution_id or key.startswith(DEFINITION_KEY_PREFIX):
        return None
    return (execution_id, int(part)) if part.isdigit() else None


# What to write for one checkpoint, in order: (None, the header's state dict) or
# (part number, the part's value).
Writes = list[tuple[int | None, dict[str, Any]]]


def checkpoint_writes(
    state: ExecutionState, delta: frozenset[str], changed: Iterable[str]
) -> tuple[Writes, frozenset[str]]:
    """The records that store `state`, in the order they must be written, and the delta
    the header now carries. `delta` is what the last header carried; `changed`, the
    steps changed since it was written.

    A small execution is one record, as always. A split one is its header with the delta
    grown by `changed`; once the delta is over DELTA_LIMIT it is folded into the parts:
    the header with the whole delta first, then the parts it touches, then a header with
    an empty delta. The table's changelog keeps the order of one partition's records and
    a crash keeps a prefix of them, so every prefix reads back as the state before or
    after: parts only ever receive values that a header written before them already
    carries (and that override them when read)."""
    if not is_split(state.definition):
        return [(None, state_to_dict(state, inline_definition=False))], frozenset()
    delta = delta | frozenset(changed)
    header = state_to_dict(state, inline_definition=False, step_ids=sorted(delta))
    if len(delta) <= DELTA_LIMIT:
        return [(None, header)], delta
    parts = parts_of(state.definition)
    members: dict[int, list[str]] = {}
    for step_id in delta:
        members.setdefault(part_of(state.definition, step_id), [])
    for n in members:
        if n < len(parts):
            members[n] = list(parts[n])
        else:  # a chunk of instances: those the state has
            members[n] = _chunk_members(state, n - len(parts))
    writes: Writes = [(None, header)]
    for n in sorted(members):
        writes.append((n, {"steps": {i: step_to_list(state.steps[i]) for i in members[n]}}))
    writes.append((None, state_to_dict(state, inline_definition=False, step_ids=())))
    return writes, frozenset()


def _chunk_members(state: ExecutionState, offset: int) -> list[str]:
    """The instance ids of a chunk (`offset` past the definition's parts) in the state."""
    fan_out, chunk = divmod(offset, CHUNKS_PER_FAN_OUT)
    parent = state.definition.fan_outs[fan_out]
    first = chunk * STEPS_PER_PART
    ids = (f"{parent}[{index}]" for index in range(first, first + STEPS_PER_PART))
    return [i for i in ids if i in state.steps]


def merge_parts(
    header: dict[str, Any], parts: Mapping[int, Mapping[str, Any] | None]
) -> dict[str, Any]:
    """A header's state dict with all its steps: the parts', and the header's own (newer)
    over them. A small execution's header has them all already."""
    count = header.get("parts")
    if count is None:
        return header
    steps: dict[str, Any] = {}
    for n in sorted(parts):  # a part not written yet: the header's delta has its steps
        part = parts[n]
        if part is not None:
            steps.update(part["steps"])
    steps.update(header["steps"])
    merged = {**header, "steps": steps}
    del merged["parts"]
    merged.pop("fans", None)
    return merged
