"""Sub-workflows: a step that starts a child execution of the same tenant and waits for
its outcome (`workflow: {id, version, input}`).

The child's id is deterministic, made of the parent's id, the step and the attempt, so
a redelivered start never starts two children (the intake dedupes by execution id), and
a retry of the step starts a new child. The child's outcome comes back to the parent's
partition as a `ChildEnded`, which the reducer applies as the step's report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stepstream.workflows.requests import MAX_ID_LENGTH

CHILD_TYPE = "workflow"  # the type of a step that runs a sub-workflow (`workflow:`)
CHILD_WORKER_PREFIX = "workflow:"  # who ended a child step's attempt: the child's id
_CHILD_IDS = uuid.UUID("5f0c3f1e-8a52-4d0e-9a57-6b7c2ad4c9e1")


class OnParentCancel(StrEnum):
    CANCEL = "cancel"  # cancelling the parent cancels the child (the default)
    ABANDON = "abandon"  # the child runs on; its outcome is ignored


@dataclass(frozen=True, slots=True)
class ChildWorkflow:
    """`workflow: {id, version, input}` and the step's `onParentCancel`. `input` is an
    expression giving the child's input (an object), or a mapping of field to
    expression; None: the parent's own input."""

    workflow_id: str
    version: int = 0  # 0: the latest registered when the child starts (then pinned)
    input: str | Mapping[str, str] | None = None
    on_parent_cancel: OnParentCancel = OnParentCancel.CANCEL

    def expressions(self) -> dict[str, str]:
        """Each input expression, by where it is written (`input` or `input.<field>`)."""
        if isinstance(self.input, str):
            return {"input": self.input}
        if self.input is None:
            return {}
        return {f"input.{name}": text for name, text in self.input.items()}

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"id": self.workflow_id}
        if self.version:
            spec["version"] = self.version
        if self.input is not None:
            spec["input"] = self.input if isinstance(self.input, str) else dict(self.input)
        fields: dict[str, Any] = {"workflow": spec}
        if self.on_parent_cancel is not OnParentCancel.CANCEL:
            fields["onParentCancel"] = str(self.on_parent_cancel)
        return fields


class ChildInputError(ValueError):
    """The child's input cannot be read: the step fails with it."""


def child_execution_id(parent_id: str, step_id: str, attempt: int) -> str:
    """The child of this attempt of the step: readable when it fits in an id, else a
    name-based UUID of the same three parts."""
    readable = f"{parent_id}.{step_id}.{attempt}"
    if len(readable) <= MAX_ID_LENGTH:
        return readable
    return str(uuid.uuid5(_CHILD_IDS, f"{parent_id}/{step_id}/{attempt}"))


def child_input(
    child: ChildWorkflow,
    parent_input: Mapping[str, Any],
    evaluate: Callable[[str], Any],
) -> dict[str, Any]:
    """The child's input: its expression's value (an object), each field's value, or the
    parent's input. `evaluate(text)` reads an expression of the definition."""
    if child.input is None:
        return dict(parent_input)
    if isinstance(child.input, str):
        value = evaluate(child.input)
        if not isinstance(value, dict):
            kind = "null" if value is None else type(value).__name__
            raise ChildInputError(f"input {child.input} gave {kind}, not an object")
        return value
    return {name: evaluate(text) for name, text in child.input.items()}


def parse_child(
    raw: Mapping[str, Any], where: str, fail: Callable[[str, str], None]
) -> ChildWorkflow | None:
    """`workflow: {id, version, input}` with the step's `onParentCancel`."""
    if "workflow" not in raw:
        if "onParentCancel" in raw:
            fail(f"{where}.onParentCancel", "only a step with 'workflow' has a child")
        return None
    spec, at = raw["workflow"], f"{where}.workflow"
    if not isinstance(spec, Mapping) or not isinstance(spec.get("id"), str) or not spec["id"]:
        fail(at, "must be a mapping with the child workflow's 'id'")
        return None
    for key in sorted(set(spec) - {"id", "version", "input"}):
        fail(at, f"unknown field {key!r} (known: id, input, version)")
    version = spec.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        fail(f"{at}.version", f"must be a positive integer (or left out: latest), got {version!r}")
        version = 0
    child_in = spec.get("input")
    if isinstance(child_in, Mapping):
        for name, text in child_in.items():
            if not (isinstance(text, str) and text.strip()):
                fail(f"{at}.input.{name}", f"must be an expression in a string, got {text!r}")
        child_in = {str(k): v for k, v in child_in.items() if isinstance(v, str)}
    elif child_in is not None and not (isinstance(child_in, str) and child_in.strip()):
        fail(f"{at}.input", f"must be an expression or a mapping of them, got {child_in!r}")
        child_in = None
    on_cancel = raw.get("onParentCancel", str(OnParentCancel.CANCEL))
    if on_cancel not in set(OnParentCancel):
        fail(f"{where}.onParentCancel", f"must be cancel or abandon, got {on_cancel!r}")
        on_cancel = OnParentCancel.CANCEL
    return ChildWorkflow(spec["id"], version, child_in, OnParentCancel(on_cancel))


def call_cycle(
    workflow_id: str,
    calls: Mapping[str, Any],
    lookup: Callable[[str, int], Any],
) -> list[str] | None:
    """A path of static calls from `workflow_id` back to itself, through registered
    workflows (`lookup(id, version)` gives a definition or None; version 0: the latest),
    or None. `calls`: the workflow's own steps that call, by step id, as ChildWorkflow."""
    seen: set[str] = set()

    def walk(path: list[str], children: list[ChildWorkflow]) -> list[str] | None:
        for child in children:
            if child.workflow_id == workflow_id:
                return [*path, workflow_id]
            if child.workflow_id in seen:
                continue
            seen.add(child.workflow_id)
            called = lookup(child.workflow_id, child.version)
            if called is None:
                continue
            nested = [s.child for s in called.steps if s.child is not None]
            found = walk([*path, child.workflow_id], nested)
            if found is not None:
                return found
        return None

    return walk([workflow_id], list(calls.values()))
