"""Read a raw definition (parsed YAML or JSON) field by field into a WorkflowDefinition,
collecting every shape problem with its location on the way. What the fields mean
together (references, cycles, expressions) is `stepstream.workflows.validation`'s."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from stepstream.workflows.children import CHILD_TYPE, ChildWorkflow, parse_child
from stepstream.workflows.definition import (
    EVENT_TYPE,
    HUMAN_TYPE,
    WAIT_TYPE,
    DefaultPolicies,
    HumanTask,
    OnTimeout,
    RetryPolicy,
    StepDefinition,
    Trigger,
    Wait,
    WaitFor,
    WorkflowDefinition,
)
from stepstream.workflows.durations import DurationError, parse_duration
from stepstream.workflows.fan_out import parse_for_each
from stepstream.workflows.problems import Problem
from stepstream.workflows.rate_limit import OverLimitPolicy, RateLimit

WORKFLOW_FIELDS = {"id", "version", "name", "description", "steps", "defaults", "rateLimit"}
RATE_LIMIT_FIELDS = {"points", "windowSeconds", "policy"}
STEP_FIELDS = {"id", "type", "name", "description", "dependsOn", "retry", "timeoutMs"}
STEP_FIELDS |= {"parallel", "config", "queue", "when", "trigger", "wait", "waitFor", "onTimeout"}
STEP_FIELDS |= {"human", "forEach", "as", "maxParallel", "failurePolicy"}
STEP_FIELDS |= {"workflow", "onParentCancel", "from"}
WAIT_FIELDS = {"for", "until"}
WAIT_FOR_FIELDS = {"event", "correlationKey", "timeout"}
HUMAN_FIELDS = {"assignee", "form", "title", "timeout"}
HOLDS = ("wait", "waitFor", "human", "workflow")  # how a held step waits: one of them
# An event name is a part of the correlator's keys and of metric labels: kept plain.
EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# What a wait step cannot have: no worker runs it, so nothing retries or times it out.
NOT_ON_WAITS = {"queue", "retry", "timeoutMs", "config"}
# A queue name becomes part of a topic name: `<prefix>.tasks.<queue>`.
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
RETRY_FIELDS = {"maxAttempts", "initialBackoffMs", "multiplier", "maxBackoffMs", "jitter"}
DEFAULTS_FIELDS = {"retry", "timeoutMs"}


class Parser:
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
        on_timeout = self.on_timeout(where, raw)
        wait = self.wait(where, raw)
        wait_for = self.wait_for(where, raw, on_timeout)
        human = self.human(where, raw, on_timeout)
        holds = [hold for hold in HOLDS if hold in raw]
        if len(holds) > 1:
            self.fail(where, f"a step takes one of {', '.join(HOLDS)}, not {holds}")
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
            type=self.held_type(raw, where),
            depends_on=tuple(depends_on),
            retry=self.retry(f"{where}.retry", raw["retry"]) if "retry" in raw else None,
            timeout_ms=self.optional_int(raw, "timeoutMs", f"{where}.timeoutMs"),
            parallel=parallel,
            config=dict(config),
            queue=queue,
            when=when,
            trigger=Trigger(trigger),
            wait=wait,
            wait_for=wait_for,
            human=human,
            for_each=parse_for_each(raw, where, self.fail),
            child=self.child(where, raw),
            source=raw.get("from") if isinstance(raw.get("from"), str) else None,
        )

    def child(self, where: str, raw: Mapping[str, Any]) -> ChildWorkflow | None:
        if "workflow" in raw:
            for field_name in sorted({"queue", "timeoutMs", "config"} & set(raw)):
                self.fail(where, f"a sub-workflow step takes no {field_name!r}: no worker runs it")
        return parse_child(raw, where, self.fail)

    def held_type(self, raw: Mapping[str, Any], where: str) -> str:
        """A held step's type may be left out: it is implied by how it waits."""
        implied = {"wait": WAIT_TYPE, "waitFor": EVENT_TYPE, "human": HUMAN_TYPE}
        implied["workflow"] = CHILD_TYPE
        for hold, step_type in implied.items():
            if "type" not in raw and hold in raw:
                return step_type
        return self.text(raw, "type", f"{where}.type")

    def on_timeout(self, where: str, raw: Mapping[str, Any]) -> OnTimeout:
        """The step's `onTimeout`: only a wait for an event or for an answer has one."""
        on_timeout = raw.get("onTimeout", str(OnTimeout.FAIL))
        if on_timeout not in set(OnTimeout):
            known = ", ".join(OnTimeout)
            self.fail(f"{where}.onTimeout", f"must be one of {known}, got {on_timeout!r}")
            return OnTimeout.FAIL
        if "onTimeout" in raw and "waitFor" not in raw and "human" not in raw:
            self.fail(f"{where}.onTimeout", "only a step that waits (waitFor, human) times out so")
        return OnTimeout(on_timeout)

    def timeout(self, where: str, spec: Mapping[str, Any], raw: Mapping[str, Any]) -> int | None:
        """A wait's `timeout` (a duration), which `onTimeout` needs."""
        if "timeout" not in spec:
            if "onTimeout" in raw:
                self.fail(f"{where}.timeout", "onTimeout is set, but the wait has no timeout")
            return None
        try:
            timeout = parse_duration(spec["timeout"])
        except DurationError as error:
            self.fail(f"{where}.timeout", str(error))
            return None
        if timeout <= 0:
            self.fail(f"{where}.timeout", "must be longer than 0")
        return timeout

    def not_on_waits(self, where: str, raw: Mapping[str, Any], what: str) -> None:
        for field_name in sorted(NOT_ON_WAITS & set(raw)):
            self.fail(where, f"{what} takes no {field_name!r}: no worker runs it")

    def human(self, where: str, raw: Mapping[str, Any], on_timeout: OnTimeout) -> HumanTask | None:
        """`human: {assignee: <expression>, form: <JSON Schema>, title, timeout: 48h}`.
        The form is checked as a schema by validation (`stepstream.workflows.forms`)."""
        if "human" not in raw:
            return None
        spec, where = raw["human"], f"{where}.human"
        self.not_on_waits(where, raw, "a human task")
        if not isinstance(spec, Mapping):
            self.fail(where, "must be a mapping with a 'form' (a JSON Schema)")
            return None
        self.unknown_fields(where, spec, HUMAN_FIELDS)
        if "form" not in spec:
            self.fail(f"{where}.form", "is required: a JSON Schema of the answer")
        assignee = spec.get("assignee")
        if assignee is not None and not (isinstance(assignee, str) and assignee.strip()):
            self.fail(f"{where}.assignee", f"must be an expression in a string, got {assignee!r}")
            assignee = None
        title = spec.get("title")
        if title is not None and not isinstance(title, str):
            self.fail(f"{where}.title", f"must be a string, got {title!r}")
            title = None
        form = spec.get("form", {})
        timeout = self.timeout(where, spec, raw)
        return HumanTask(form, assignee, title, timeout, on_timeout)

    def wait_for(self, where: str, raw: Mapping[str, Any], on_timeout: OnTimeout) -> WaitFor | None:
        """`waitFor: {event: <name>, correlationKey: <expression>, timeout: 2h}`."""
        if "waitFor" not in raw:
            return None
        spec, where = raw["waitFor"], f"{where}.waitFor"
        self.not_on_waits(where, raw, "a waiting step")
        if not isinstance(spec, Mapping):
            self.fail(where, "must be a mapping with an 'event' name")
            return None
        self.unknown_fields(where, spec, WAIT_FOR_FIELDS)
        event = spec.get("event")
        if not (isinstance(event, str) and EVENT_NAME.fullmatch(event)):
            self.fail(
                f"{where}.event",
                "an event name is required: letters, digits, '_', '.', ':' or '-' "
                f"(at most 128), got {event!r}",
            )
            event = "?"
        key = spec.get("correlationKey")
        if key is not None and not (isinstance(key, str) and key.strip()):
            self.fail(f"{where}.correlationKey", f"must be an expression in a string, got {key!r}")
            key = None
        return WaitFor(event, key, self.timeout(where, spec, raw), on_timeout)

    def wait(self, where: str, raw: Mapping[str, Any]) -> Wait | None:
        """`wait: {for: 2h}` or `wait: {until: <expression>}`."""
        if "wait" not in raw:
            return None
        spec, where = raw["wait"], f"{where}.wait"
        self.not_on_waits(where, raw, "a wait step")
        if not isinstance(spec, Mapping) or len(WAIT_FIELDS & set(spec)) != 1:
            self.fail(where, "must be a mapping with one of 'for' (a duration) or 'until'")
            return Wait(for_ms=1)
        self.unknown_fields(where, spec, WAIT_FIELDS)
        if "until" in spec:
            until = spec["until"]
            if isinstance(until, str) and until.strip():
                return Wait(until=until)
            self.fail(f"{where}.until", f"must be an expression in a string, got {until!r}")
            return Wait(for_ms=1)
        try:
            duration = parse_duration(spec["for"])
        except DurationError as error:
            self.fail(f"{where}.for", str(error))
            return Wait(for_ms=1)
        if duration <= 0:
            self.fail(f"{where}.for", "must be longer than 0")
        return Wait(for_ms=duration)

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
