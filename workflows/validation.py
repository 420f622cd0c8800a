"""Turn raw definitions (parsed YAML/JSON, or Python objects) into validated ones.

Every problem is reported at once, each with its location, so an author fixes a file in
one pass. A cycle is reported with its path.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from stepstream.workflows.definition import (
    DefaultPolicies,
    RetryPolicy,
    StepDefinition,
    Trigger,
    WorkflowDefinition,
)
from stepstream.workflows.expressions import ExpressionError, compile_condition
from stepstream.workflows.rate_limit import OverLimitPolicy, RateLimit

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_ATTEMPTS_LIMIT = 100

WORKFLOW_FIELDS = {"id", "version", "name", "description", "steps", "defaults", "rateLimit"}
RATE_LIMIT_FIELDS = {"points", "windowSeconds", "policy"}
STEP_FIELDS = {"id", "type", "name", "description", "dependsOn", "retry", "timeoutMs"}
STEP_FIELDS |= {"parallel", "config", "queue", "when", "trigger"}
# A queue name becomes part of a topic name: `<prefix>.tasks.<queue>`.
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
RETRY_FIELDS = {"maxAttempts", "initialBackoffMs", "multiplier", "maxBackoffMs", "jitter"}
DEFAULTS_FIELDS = {"retry", "timeoutMs"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition, and where."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InvalidDefinition(ValueError):
    """A definition was rejected; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid workflow definition:\n" + "\n".join(f"  {p}" for p in problems))


def build_definition(
    raw: Mapping[str, Any], step_types: Collection[str] | None = None
) -> WorkflowDefinition:
    """Parse and validate a raw definition; raise InvalidDefinition listing every problem."""
    parser = _Parser()
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
        elif step_types is not None and step.queue is None and step.type not in step_types:
            known = ", ".join(sorted(step_types)) or "none registered"
            problems.append(Problem(f"{where}.type", f"unknown step type {step.type!r} ({known})"))
        if step.retry is not None:
            problems += _policy_problems(f"{where}.retry", step.retry)
        if step.timeout_ms is not None and step.timeout_ms <= 0:
            problems.append(Problem(f"{where}.timeoutMs", "must be a positive number"))
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
    """Each `when` compiles, and (on a valid graph, where ancestors are defined) reads
    only the steps it runs after."""
    problems: list[Problem] = []
    for index, step in enumerate(definition.steps):
        if step.when is None:
            continue
        where = f"steps[{index}] ({step.id}).when"
        try:
            condition = compile_condition(step.when)
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


class _Parser:
    """Reads the raw mapping field by field, collecting shape problems as it goes."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, location: str, message: str) -> None:
        self.problems.append(Problem(location, message))

    def workflow(self, raw: Any) -> WorkflowDefinition | None:
        if not isinstance(raw, Mapping):
            self.fail("(root)", f"a definition must be a mapping, got {type(raw).__name__}")
            return None
        self.unknown_fields("(root)", raw, WORKFLOW_FIELDS)
        workflow_id = self.text(raw, "id", "id")
        version = raw.get("version", 1)
        if not _is_int(version):
            self.fail("version", f"must be an integer, got {version!r}")
            version = 1
        name = raw.get("name", workflow_id)
        if not isinstance(name, str):
            self.fail("name", "must be a string")
            name = workflow_id
        defaults = self.defaults(raw.get("defaults", {}))
        raw_steps = raw.get("steps")
        if not isinstance(raw_steps, list):
            self.fail("steps", "must be a list of steps")
            raw_steps = []
        steps = [self.step(f"steps[{i}]", item) for i, item in enumerate(raw_steps)]
        parsed = [step for step in steps if step is not None]
        if not any(isinstance(s, Mapping) and "dependsOn" in s for s in raw_steps):
            parsed = _sequential(parsed)
        rate_limit = self.rate_limit(raw["rateLimit"]) if "rateLimit" in raw else None
        return WorkflowDefinition(workflow_id, version, name, tuple(parsed), defaults, rate_limit)

    def rate_limit(self, raw: Any) -> RateLimit | None:
        if not isinstance(raw, Mapping):
            self.fail("rateLimit", "must be a mapping")
            return None
        self.unknown_fields("rateLimit", raw, RATE_LIMIT_FIELDS)
        numbers: dict[str, int] = {}
        for key in ("points", "windowSeconds"):
            value = raw.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                numbers[key] = value
            else:
                self.fail(f"rateLimit.{key}", f"must be a positive integer, got {value!r}")
        policy = raw.get("policy", "reject")
        if policy not in {p.value for p in OverLimitPolicy}:
            self.fail("rateLimit.policy", f"unknown policy {policy!r} (reject or defer)")
            return None
        if len(numbers) < 2:
            return None
        return RateLimit(
            numbers["points"], numbers["windowSeconds"] * 1000, OverLimitPolicy(policy)
        )

    def step(self, where: str, raw: Any) -> StepDefinition | None:
        if not isinstance(raw, Mapping):
            self.fail(where, "a step must be a mapping")
            return None
        self.unknown_fields(where, raw, STEP_FIELDS)
        depends_on = raw.get("dependsOn", [])
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            self.fail(f"{where}.dependsOn", "must be a list of step ids")
            depends_on = []
        parallel = raw.get("parallel")
        if parallel is not None and not isinstance(parallel, bool):
            self.fail(f"{where}.parallel", "must be true or false")
            parallel = None
        config = raw.get("config", {})
        if not isinstance(config, Mapping):
            self.fail(f"{where}.config", "must be a mapping")
            config = {}
        queue = raw.get("queue")
        if queue is not None and not (isinstance(queue, str) and QUEUE_NAME.fullmatch(queue)):
            self.fail(
                f"{where}.queue",
                f"must be lowercase letters, digits, '_' or '-' (at most 64), got {queue!r}",
            )
            queue = None
        when = raw.get("when")
        if when is not None and not (isinstance(when, str) and when.strip()):
            self.fail(f"{where}.when", f"must be an expression in a string, got {when!r}")
            when = None
        trigger = raw.get("trigger", str(Trigger.NONE_FAILED))
        if trigger not in set(Trigger):
            known = ", ".join(Trigger)
            self.fail(f"{where}.trigger", f"must be one of {known}, got {trigger!r}")
            trigger = Trigger.NONE_FAILED
        return StepDefinition(
            id=self.text(raw, "id", f"{where}.id"),
            type=self.text(raw, "type", f"{where}.type"),
            depends_on=tuple(depends_on),
            retry=self.retry(f"{where}.retry", raw["retry"]) if "retry" in raw else None,
            timeout_ms=self.optional_int(raw, "timeoutMs", f"{where}.timeoutMs"),
            parallel=parallel,
            config=dict(config),
            queue=queue,
            when=when,
            trigger=Trigger(trigger),
        )

    def defaults(self, raw: Any) -> DefaultPolicies:
        if not isinstance(raw, Mapping):
            self.fail("defaults", "must be a mapping")
            return DefaultPolicies()
        self.unknown_fields("defaults", raw, DEFAULTS_FIELDS)
        retry = self.retry("defaults.retry", raw["retry"]) if "retry" in raw else RetryPolicy()
        timeout = self.optional_int(raw, "timeoutMs", "defaults.timeoutMs")
        return DefaultPolicies(retry) if timeout is None else DefaultPolicies(retry, timeout)

    def retry(self, where: str, raw: Any) -> RetryPolicy:
        if not isinstance(raw, Mapping):
            self.fail(where, "must be a mapping")
            return RetryPolicy()
        self.unknown_fields(where, raw, RETRY_FIELDS)
        base = RetryPolicy()
        numbers: dict[str, float] = {}
        for key in RETRY_FIELDS & set(raw):
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(f"{where}.{key}", f"must be a number, got {value!r}")
            elif key in {"maxAttempts", "initialBackoffMs", "maxBackoffMs"} and not _is_int(value):
                self.fail(f"{where}.{key}", f"must be an integer, got {value!r}")
            else:
                numbers[key] = value
        return RetryPolicy(
            max_attempts=int(numbers.get("maxAttempts", base.max_attempts)),
            initial_backoff_ms=int(numbers.get("initialBackoffMs", base.initial_backoff_ms)),
            multiplier=float(numbers.get("multiplier", base.multiplier)),
            max_backoff_ms=int(numbers.get("maxBackoffMs", base.max_backoff_ms)),
            jitter=float(numbers.get("jitter", base.jitter)),
        )

    def text(self, raw: Mapping[str, Any], key: str, where: str) -> str:
        value = raw.get(key)
        if isinstance(value, str) and value:
            return value
        self.fail(where, "is required" if value is None else f"must be a string, got {value!r}")
        return ""

    def optional_int(self, raw: Mapping[str, Any], key: str, where: str) -> int | None:
        value = raw.get(key)
        if value is None or _is_int(value):
            return value
        self.fail(where, f"must be an integer, got {value!r}")
        return None

    def unknown_fields(self, where: str, raw: Mapping[str, Any], known: set[str]) -> None:
        for key in raw:
            if key not in known:
                self.fail(where, f"unknown field {key!r} (known: {', '.join(sorted(known))})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sequential(steps: list[StepDefinition]) -> list[StepDefinition]:
    """Backward compatibility for definitions that name no dependencies at all.

    Such workflows ran their steps in list order; a run of consecutive steps flagged
    `parallel: true` ran together. Each group now depends on every step of the group
    before it, which keeps that behaviour on the DAG engine.
    """
    groups: list[list[StepDefinition]] = []
    for step in steps:
        if step.parallel and groups and groups[-1][-1].parallel:
            groups[-1].append(step)
        else:
            groups.append([step])
    result: list[StepDefinition] = []
    previous: tuple[str, ...] = ()
    for group in groups:
        result += [replace(step, depends_on=previous) for step in group]
        previous = tuple(step.id for step in group)
    return result


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
