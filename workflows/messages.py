"""What the execution state machine takes (events) and what it asks for (commands).

Events are facts about one execution, translated from Kafka by the coordinator;
commands are what the coordinator must emit after a transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    at_ms: int


@dataclass(frozen=True, slots=True)
class StepCompleted:
    step_id: str
    attempt: int
    output: Any
    at_ms: int
    started_at_ms: int | None = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    step_id: str
    attempt: int
    error: str
    retryable: bool
    at_ms: int
    started_at_ms: int | None = None
    worker: str | None = None
    timed_out: bool = False  # the coordinator's deadline passed, no report came


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A queue step's worker is still on the attempt: its deadline moves to `at_ms` plus
    the step's timeout (never earlier than it was)."""

    step_id: str
    attempt: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock moved on: time out silent queue steps, fire due timers, release retries
    that are due."""

    now_ms: int
    step_id: str | None = None  # the due event's step: a fan-out instance is looked at alone


@dataclass(frozen=True, slots=True)
class EventArrived:
    """An event from outside, routed by the correlator to the wait that subscribed to
    it: attempt `attempt` of `step_id`. Its payload becomes the step's output."""

    step_id: str
    attempt: int
    name: str
    event_id: str  # the producer's
    payload: Any
    at_ms: int
    scope: str = "execution"  # the correlator's address it came from: scope and key
    key: str = ""


@dataclass(frozen=True, slots=True)
class TaskAnswered:
    """A person answered attempt `attempt` of a human step (`answered_by` says who, as
    the client that sent it knew them). The answer becomes the step's output, once it
    matches the step's form."""

    step_id: str
    attempt: int
    answer: Any
    answered_by: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class ChildEnded:
    """The child execution that attempt `attempt` of `step_id` started has ended (or was
    refused by the intake): `status` is completed, failed, cancelled or rejected."""

    step_id: str
    attempt: int
    child_id: str
    status: str
    outputs: Any
    error: str | None
    at_ms: int


class ReplayAction(StrEnum):
    CANCEL = "cancel"  # running: end it as cancelled; nothing new starts
    RESUME = "resume"  # running: send step-ready again for running steps, retries now
    RETRY = "retry"  # failed: the failed step gets a new attempt, the rest carries on
    RERUN_FROM = "rerun-from"  # ended: the step and everything downstream run again


@dataclass(frozen=True, slots=True)
class Replay:
    """An operator's request. `request_id` makes it idempotent: a request seen again
    (redelivery, an operator repeating a command) changes nothing."""

    request_id: str
    action: ReplayAction
    at_ms: int
    step_id: str | None = None
    reason: str = ""


Event = (
    Started
    | StepCompleted
    | StepFailed
    | Heartbeat
    | Tick
    | Replay
    | EventArrived
    | TaskAnswered
    | ChildEnded
)


# Commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmitStepReady:
    step_id: str
    step_type: str
    attempt: int
    inputs: Mapping[str, Any]
    config: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class ScheduleRetry:
    step_id: str
    attempt: int
    due_at_ms: int


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """A queue step's attempt times out at `due_at_ms` unless reported by then: its
    worker may have died silently, and only the coordinator can tell."""

    step_id: str
    attempt: int
    due_at_ms: int


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """A wait step's timer: the step completes once the clock reaches `due_at_ms`. The
    coordinator keeps it in a due-time index beside the checkpoint, so it survives any
    worker; the clock comes back as a Tick."""

    step_id: str
    attempt: int
    due_at_ms: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A wait for an event began: tell the correlator, under the execution's id and, if
    the step has one, under its correlation key (`key`)."""

    step_id: str
    attempt: int
    event: str
    key: str | None


@dataclass(frozen=True, slots=True)
class OpenTask:
    """A human step's attempt began: a task for `assignee` (None: anyone of the tenant),
    to answer before `due_at_ms` (None: no timeout). Announced as a HumanTaskOpened,
    which the persister lists and a notifier may tell the assignee of."""

    step_id: str
    attempt: int
    assignee: str | None
    due_at_ms: int | None


@dataclass(frozen=True, slots=True)
class StartChild:
    """Start the child execution `child_id` of this attempt of a sub-workflow step: a
    start request like any other of the tenant (the intake dedupes it by its id)."""

    step_id: str
    attempt: int
    child_id: str
    workflow_id: str
    version: int
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CancelChild:
    """Cancel a child execution: its parent was cancelled (`onParentCancel: cancel`)."""

    step_id: str
    attempt: int
    child_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """A wait for an event ended (the event came, it timed out, the execution ended):
    the correlator forgets it. Best effort: a subscription whose end was lost is
    dropped when its next event is refused."""

    step_id: str
    attempt: int
    event: str
    key: str | None


@dataclass(frozen=True, slots=True)
class RefuseEvent:
    """An event the correlator delivered finds no wait for it (it ended meanwhile):
    it goes back to the correlator, which offers it to the next wait or keeps it for
    the rest of its time to live. An event is never lost by a race."""

    event: EventArrived
    reason: str


@dataclass(frozen=True, slots=True)
class SkipStep:
    """Announce that the step will not run, and why (a `StepSkipped` event)."""

    step_id: str
    reason: str


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    IGNORED = "ignored"  # a report the coordinator did not apply; `error` says why


@dataclass(frozen=True, slots=True)
class EndAttempt:
    """The coordinator's decision on an attempt (a `StepAttemptEnded` event): how it
    ended, or, for a report it did not apply, why. Readers record these, never reports:
    a stale, duplicate or misrouted report then never shows as an outcome."""

    step_id: str
    attempt: int
    outcome: AttemptOutcome
    output: Any = None
    error: str | None = None  # the failure, or why a report was ignored
    will_retry: bool = False  # failed or timed out, and the retry policy runs it again
    started_at_ms: int | None = None  # the worker's clock, informational
    finished_at_ms: int | None = None
    worker: str | None = None
    report: str | None = None  # ignored: the report's kind, "completed" or "failed"
    released_at_ms: int | None = None  # the coordinator's clock: when the attempt was released


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    reason: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class CompleteWorkflow:
    outputs: Mapping[str, Any]
    at_ms: int


@dataclass(frozen=True, slots=True)
class FailWorkflow:
    step_id: str
    error: str
    at_ms: int


Command = (
    EmitStepReady
    | ScheduleRetry
    | ScheduleTimeout
    | ArmTimer
    | Subscribe
    | Unsubscribe
    | OpenTask
    | StartChild
    | CancelChild
    | RefuseEvent
    | SkipStep
    | EndAttempt
    | CompleteWorkflow
    | FailWorkflow
    | CancelWorkflow
)
