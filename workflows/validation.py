"""Turn raw definitions (parsed YAML/JSON, or Python objects) into validated ones.

Every problem is reported at once, each with its location, so an author fixes a file in
one pass. A cycle is reported with its path.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from stepstream.workflows.children import CHILD_TYPE
from stepstream.workflows.definition import (
    EVENT_TYPE,
    HUMAN_TYPE,
    WAIT_TYPE,
    RetryPolicy,
    StepDefinition,
    WorkflowDefinition,
)
from stepstream.workflows.expressions import ExpressionError, compile_condition
from stepstream.workflows.forms import form_problem
from stepstream.workflows.parsing import Parser
from stepstream.workflows.problems import InvalidDefinition, Problem

__all__ = ["InvalidDefinition", "Problem", "build_definition", "check_definition", "validated"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_ATTEMPTS_LIMIT = 100


def build_definition(
    raw: Mapping[str, Any], step_types: Collection[str] | None = None
) -> WorkflowDefinition:
    """Parse and validate a raw definition; raise InvalidDefinition listing every problem."""
    parser = Parser()
    definition = parser.workflow(raw)
    problems = parser.problems
    if definition is not None:
        problems += check_definition(definition, step_types)
    if problems or definition is None:
        raise InvalidDefinition(problems)
    return definition


def validated(
    definition: WorkflowDefinition, step_types: Collection[str] | None = None
) -> WorkflowDefinition:
    """The Python API's check: return the definition, or raise with every problem."""
    problems = check_definition(definition, step_types)
    if problems:
        raise InvalidDefinition(problems)
    return definition


def check_definition(
    definition: WorkflowDefinition, step_types: Collection[str] | None = None
) -> list[Problem]:
    """Structural problems of a parsed definition: ids, references, cycles, types."""
    problems: list[Problem] = []
    if not ID_PATTERN.match(definition.id):
        problems.append(Problem("id", f"malformed workflow id {definition.id!r}"))
    if definition.version < 1:
        problems.append(Problem("version", f"must be a positive integer, got {definition.version}"))
    if not definition.steps:
        problems.append(Problem("steps", "a workflow needs at least one step"))
    problems += _policy_problems("defaults.retry", definition.defaults.retry)
    if definition.defaults.timeout_ms <= 0:
        problems.append(Problem("defaults.timeoutMs", "must be a positive number of milliseconds"))
    seen: dict[str, int] = {}
    for index, step in enumerate(definition.steps):
        where = f"steps[{index}] ({step.id})"
        if step.id in seen:
            problems.append(
                Problem(where, f"duplicate step id, first used by steps[{seen[step.id]}]")
            )
        else:
            seen[step.id] = index
        if not ID_PATTERN.match(step.id):
            problems.append(Problem(f"steps[{index}].id", f"malformed step id {step.id!r}"))
        if not TYPE_PATTERN.match(step.type):
            problems.append(Problem(f"{where}.type", f"malformed step type {step.type!r}"))
        elif step.wait is not None and step.type != WAIT_TYPE:
            problems.append(Problem(f"{where}.type", f"a wait step's type is {WAIT_TYPE!r}"))
        elif step.wait_for is not None and step.type != EVENT_TYPE:
            problems.append(
                Problem(f"{where}.type", f"a step that waits for an event has type {EVENT_TYPE!r}")
            )
        elif step.human is not None and step.type != HUMAN_TYPE:
            problems.append(Problem(f"{where}.type", f"a human task's type is {HUMAN_TYPE!r}"))
        elif step.child is not None and step.type != CHILD_TYPE:
            problems.append(
                Problem(f"{where}.type", f"a sub-workflow step's type is {CHILD_TYPE!r}")
            )
        elif (
            step_types is not None
            and step.queue is None
            and not step.held
            and step.type not in step_types
        ):
            known = ", ".join(sorted(step_types)) or "none registered"
            problems.append(Problem(f"{where}.type", f"unknown step type {step.type!r} ({known})"))
        if step.child is not None and step.child.workflow_id == definition.id:
            problems.append(
                Problem(
                    f"{where}.workflow.id",
                    f"{definition.id} calls itself: {definition.id} -> "
                    f"{definition.id} (a sub-workflow may not start its own workflow)",
                )
            )
        if step.for_each is not None and step.held:
            problems.append(
                Problem(f"{where}.forEach", "a step that waits (wait, waitFor, human) has no items")
            )
        if step.retry is not None:
            problems += _policy_problems(f"{where}.retry", step.retry)
        if step.timeout_ms is not None and step.timeout_ms <= 0:
            problems.append(Problem(f"{where}.timeoutMs", "must be a positive number"))
        if step.human is not None and (problem := form_problem(step.human.form)) is not None:
            problems.append(Problem(f"{where}.human.form", problem))
        if step.wait is not None and (step.wait.for_ms is None) == (step.wait.until is None):
            problems.append(Problem(f"{where}.wait", "takes one of 'for' or 'until'"))
        elif step.wait is not None and step.wait.for_ms is not None and step.wait.for_ms <= 0:
            problems.append(Problem(f"{where}.wait.for", "must be longer than 0"))
    ids = {step.id for step in definition.steps}
    for index, step in enumerate(definition.steps):
        for position, dependency in enumerate(step.depends_on):
            where = f"steps[{index}] ({step.id}).dependsOn[{position}]"
            if dependency == step.id:
                problems.append(Problem(where, "a step cannot depend on itself"))
            elif dependency not in ids:
                problems.append(Problem(where, f"depends on unknown step {dependency!r}"))
        if len(set(step.depends_on)) != len(step.depends_on):
            problems.append(Problem(f"steps[{index}] ({step.id}).dependsOn", "lists a step twice"))
    edges: dict[str, list[str]] = {}
    for step in definition.steps:  # duplicates merge, so no edge hides behind one
        edges.setdefault(step.id, []).extend(
            d for d in step.depends_on if d in ids and d != step.id
        )
    cycles = find_cycles(edges)
    for cycle in cycles:
        path = " -> ".join(cycle)
        problems.append(
            Problem("steps", f"dependency cycle: {path} (each step depends on the next)")
        )
    graph_valid = not cycles and all(
        d in ids and d != step.id for step in definition.steps for d in step.depends_on
    )
    problems += _condition_problems(definition, graph_valid)
    return problems


def _condition_problems(definition: WorkflowDefinition, graph_valid: bool) -> list[Problem]:
    """Each expression (`when`, `wait.until`) compiles, and (on a valid graph, where
    ancestors are defined) reads only the steps it runs after."""
    problems: list[Problem] = []
    for _, step, where, text in _expressions(definition):
        try:
            condition = compile_condition(text)
        except ExpressionError as error:
            problems.append(Problem(where, str(error)))
            continue
        if not graph_valid:
            continue
        ancestors = definition.ancestors[step.id]
        for name in sorted(condition.steps - ancestors):
            known = ", ".join(sorted(ancestors)) or "none: it has no dependencies"
            problems.append(
                Problem(where, f"reads step {name!r}, which it does not run after ({known})")
            )
    return problems


def _expressions(definition: WorkflowDefinition) -> Iterator[tuple[int, StepDefinition, str, str]]:
    """Every expression of the definition: (step index, step, location, text)."""
    for index, step in enumerate(definition.steps):
        if step.when is not None:
            yield index, step, f"steps[{index}] ({step.id}).when", step.when
        if step.wait is not None and step.wait.until is not None:
            yield index, step, f"steps[{index}] ({step.id}).wait.until", step.wait.until
        if step.wait_for is not None and step.wait_for.correlation_key is not None:
            where = f"steps[{index}] ({step.id}).waitFor.correlationKey"
            yield index, step, where, step.wait_for.correlation_key
        if step.human is not None and step.human.assignee is not None:
            where = f"steps[{index}] ({step.id}).human.assignee"
            yield index, step, where, step.human.assignee
        if step.for_each is not None:
            yield index, step, f"steps[{index}] ({step.id}).forEach", step.for_each.items
        if step.child is not None:
            for at, text in step.child.expressions().items():
                yield index, step, f"steps[{index}] ({step.id}).workflow.{at}", text


def find_cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Cycles found by depth-first search, each as a closed path `[a, b, ..., a]`.

    Every cycle reported is real; the graph is acyclic exactly when none is reported.
    Iterative, so deep graphs do not hit the recursion limit.
    """
    visiting, done = set(), set()
    cycles: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    for root in edges:
        if root in done:
            continue
        path = [root]
        iterators: list[Iterator[str]] = [iter(edges.get(root, ()))]
        visiting.add(root)
        while iterators:
            following = next(iterators[-1], None)
            if following is None:
                finished = path.pop()
                iterators.pop()
                visiting.discard(finished)
                done.add(finished)
            elif following in visiting:
                cycle = [*path[path.index(following) :], following]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    cycles.append(cycle)
            elif following not in done:
                visiting.add(following)
                path.append(following)
                iterators.append(iter(edges.get(following, ())))
    return cycles


def _policy_problems(where: str, policy: RetryPolicy) -> list[Problem]:
    problems = []
    if not 1 <= policy.max_attempts <= MAX_ATTEMPTS_LIMIT:
        problems.append(Problem(f"{where}.maxAttempts", f"must be 1..{MAX_ATTEMPTS_LIMIT}"))
    if policy.initial_backoff_ms < 0:
        problems.append(Problem(f"{where}.initialBackoffMs", "must not be negative"))
    if policy.multiplier < 1:
        problems.append(Problem(f"{where}.multiplier", "must be at least 1"))
    if policy.max_backoff_ms < policy.initial_backoff_ms:
        problems.append(Problem(f"{where}.maxBackoffMs", "must be at least initialBackoffMs"))
    if not 0 <= policy.jitter < 1:
        problems.append(Problem(f"{where}.jitter", "must be a fraction in [0, 1)"))
    return problems


def check_queue_steps(
    definition: WorkflowDefinition, served: Mapping[str, frozenset[str] | None]
) -> tuple[list[Problem], list[str]]:
    """Queue steps against what the live workers announce (`served`: queue -> the types
    its workers run, None for any). A queue nobody serves is a warning, not a problem:
    its workers may start later. A type that none of a served queue's workers runs is a
    problem."""
    problems: list[Problem] = []
    unserved: list[str] = []
    for index, step in enumerate(definition.steps):
        if step.queue is None:
            continue
        if step.queue not in served:
            if step.queue not in unserved:
                unserved.append(step.queue)
            continue
        types = served[step.queue]
        if types is not None and step.type not in types:
            known = ", ".join(sorted(types))
            problems.append(
                Problem(
                    f"steps[{index}] ({step.id}).type",
                    f"no live worker on queue {step.queue!r} runs {step.type!r} ({known})",
                )
            )
    warnings = [f"no live worker serves queue {queue!r} yet" for queue in unserved]
    return problems, warnings
