"""Dynamic fan-out: a `forEach` step runs one instance per item of a list that is known
only at run time (the tenants a step read, the assets of an inspection).

An instance is an attempt of its own, with its own retries and timeout, under the
step id `<step>[<index>]` (no definition step id has brackets), so its idempotency key
is `<execution>/<step>[<index>]/<attempt>` and its reports are fenced as any step's.
The step itself holds no worker slot: its instances take the slots, in item order,
bounded by the step's `maxParallel` and the execution's `WORKFLOW_MAX_PARALLEL_STEPS`.
Items are not stored: the `forEach` expression is read again when an instance is
released (it reads the workflow input and completed steps' outputs, which cannot change
while the step runs). The step's progress is four counters (`FanProgress`); each
instance's state is a step state of its own, stored in the checkpoint's parts, so an
instance's report costs the same at item 10 and at item 10,000.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

# What no setting may raise the cap above: the checkpoint lays out instance parts by it.
MAX_ITEMS_LIMIT = 100_000
DEFAULT_MAX_ITEMS = 10_000


class FailurePolicy(StrEnum):
    FAIL_FAST = "failFast"  # the first instance that fails for good fails the step
    CONTINUE = "continue"  # failures are kept in the output list, the step completes
    TOLERATE = "tolerate"  # completes unless more than `tolerate_percent` of items fail


@dataclass(frozen=True, slots=True)
class ForEach:
    """`forEach: <expression giving a list>`, `as: <name>`, `maxParallel: N`,
    `failurePolicy: failFast | continue | {tolerate: N%}`."""

    items: str  # an expression (workflows.expressions) over input and steps
    as_name: str = "item"
    max_parallel: int | None = None  # None: only WORKFLOW_MAX_PARALLEL_STEPS bounds it
    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    tolerate_percent: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The definition fields, as written (for `definition_to_dict`)."""
        fields: dict[str, Any] = {"forEach": self.items}
        if self.as_name != "item":
            fields["as"] = self.as_name
        if self.max_parallel is not None:
            fields["maxParallel"] = self.max_parallel
        if self.failure_policy is FailurePolicy.TOLERATE:
            fields["failurePolicy"] = {"tolerate": f"{self.tolerate_percent:g}%"}
        elif self.failure_policy is not FailurePolicy.FAIL_FAST:
            fields["failurePolicy"] = str(self.failure_policy)
        return fields


class FanProgress(NamedTuple):
    """A running fan-out step's counters. Instances are released in item order, so
    those at `released` and after have not run; `released - running` have finished."""

    items: int
    released: int = 0
    running: int = 0  # released and not finished: running, or waiting for a retry
    failed: int = 0  # finished by failing for good

    @property
    def finished(self) -> int:
        return self.released - self.running

    def progress(self) -> str:
        """How far it is, as explain and the console say it: "37 of 120 items done"."""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.finished} of {self.items} items done{failed}"

    @property
    def done(self) -> bool:
        return self.released == self.items and self.running == 0


class ForEachError(ValueError):
    """The item list cannot be read, or is over the cap: the step fails with it."""


def instance_id(step_id: str, index: int) -> str:
    return f"{step_id}[{index}]"


def split_instance(step_id: str) -> tuple[str, int] | None:
    """(step, index) for an instance's id; None for a definition step's."""
    if not step_id.endswith("]"):
        return None
    parent, bracket, index = step_id[:-1].rpartition("[")
    if not bracket or not parent or not index.isdigit():
        return None
    return parent, int(index)


def parent_of(step_id: str) -> str:
    """The definition step an id belongs to: itself, or an instance's step."""
    split = split_instance(step_id)
    return step_id if split is None else split[0]


def checked_items(value: Any, text: str, cap: int) -> list[Any]:
    """The list a `forEach` expression gave, or why it cannot be fanned out."""
    if not isinstance(value, list):
        kind = "null" if value is None else type(value).__name__
        raise ForEachError(f"forEach {text} gave {kind}, not a list")
    if len(value) > cap:
        raise ForEachError(
            f"forEach {text} gave {len(value)} items, over the cap of {cap} "
            "(WORKFLOW_MAX_FOREACH_ITEMS)"
        )
    return value


def over_tolerance(for_each: ForEach, progress: FanProgress) -> bool:
    """Whether the failures so far fail the step under its failure policy."""
    if progress.failed == 0:
        return False
    if for_each.failure_policy is FailurePolicy.FAIL_FAST:
        return True
    if for_each.failure_policy is FailurePolicy.TOLERATE:
        return progress.failed * 100 > for_each.tolerate_percent * progress.items
    return False


def tolerance_error(for_each: ForEach, progress: FanProgress, first_error: str) -> str:
    """The step's error when its instances' failures fail it."""
    if for_each.failure_policy is FailurePolicy.FAIL_FAST:
        return f"an item failed: {first_error}"
    return (
        f"{progress.failed} of {progress.items} items failed, over the "
        f"{for_each.tolerate_percent:g}% tolerated (first: {first_error})"
    )


def instance_inputs(
    base: Mapping[str, Any], for_each: ForEach, item: Any, index: int
) -> dict[str, Any]:
    """An instance's step-ready inputs: the step's, with its item (as `item` and under
    the `as:` name) and its index."""
    inputs = {**base, "item": item, "index": index}
    if for_each.as_name != "item":
        inputs[for_each.as_name] = item
    return inputs


def failed_entry(error: str | None) -> dict[str, Any]:
    """What a failed instance leaves in the step's output list (continue, tolerate)."""
    return {"error": error or "failed"}


ITEM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
TOLERATED = re.compile(r"(\d+(?:\.\d+)?)\s*%?")
NOT_ITEM_NAMES = frozenset({"input", "steps", "index"})


def parse_for_each(
    raw: Mapping[str, Any], where: str, fail: Callable[[str, str], None]
) -> ForEach | None:
    """`forEach: <expression>` with `as`, `maxParallel` and `failurePolicy`."""
    if "forEach" not in raw:
        for field_name in sorted({"as", "maxParallel", "failurePolicy"} & set(raw)):
            fail(f"{where}.{field_name}", "only a step with 'forEach' takes it")
        return None
    items = raw["forEach"]
    if not (isinstance(items, str) and items.strip()):
        fail(f"{where}.forEach", f"must be an expression in a string, got {items!r}")
        items = "[]"
    as_name = raw.get("as", "item")
    if not (isinstance(as_name, str) and ITEM_NAME.fullmatch(as_name)) or as_name in NOT_ITEM_NAMES:
        fail(f"{where}.as", f"must be a name other than input, steps, index: {as_name!r}")
        as_name = "item"
    limit = raw.get("maxParallel")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        fail(f"{where}.maxParallel", f"must be a positive integer, got {limit!r}")
        limit = None
    policy, percent = _failure_policy(where, raw.get("failurePolicy", "failFast"), fail)
    return ForEach(items, as_name, limit, policy, percent)


def _failure_policy(
    where: str, raw: Any, fail: Callable[[str, str], None]
) -> tuple[FailurePolicy, float]:
    """`failFast`, `continue`, or `{tolerate: 20%}` (also written `tolerate 20%`)."""
    if isinstance(raw, str) and raw in {FailurePolicy.FAIL_FAST, FailurePolicy.CONTINUE}:
        return FailurePolicy(raw), 0.0
    text = raw.get("tolerate") if isinstance(raw, Mapping) and len(raw) == 1 else None
    if isinstance(raw, str) and raw.startswith("tolerate"):
        text = raw.removeprefix("tolerate").lstrip(": ")
    match = TOLERATED.fullmatch(str(text).strip()) if text is not None else None
    if match is None or not 0 <= float(match.group(1)) <= 100:
        fail(
            f"{where}.failurePolicy",
            f"must be failFast, continue or {{tolerate: N%}} (0-100), got {raw!r}",
        )
        return FailurePolicy.FAIL_FAST, 0.0
    return FailurePolicy.TOLERATE, float(match.group(1))
