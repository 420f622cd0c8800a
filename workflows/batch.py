"""The coordinator's decision for one execution's events of a batch, without I/O.

The checkpoint remembers, per input topic, the offset of the last event it applied
(`applied`). An event at or below that offset is a redelivery after a crash or a
rebalance: its state change is already in the checkpoint, but what it emitted may never
have been delivered, so the execution's outstanding commands (`announce`) are emitted
again, once per input topic, with the same event ids (delivery rule 2). Every other
event goes through the reducer; the checkpoint is written once for the batch, with the
offsets of the events that changed it. A report the reducer does not apply (stale, of
an ended execution, contradicting its attempt's end) is not a change, but it is a
decision: an ignored `EndAttempt` with the reason, so no reader takes it for an outcome
(so is a person's answer that is not applied: a task not open, a form not matched).
An event from outside that finds its wait ended is sent back to the correlator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from stepstream.workflows.event_waits import refused_event
from stepstream.workflows.execution import (
    Command,
    Event,
    EventArrived,
    ExecutionState,
    Started,
    StepCompleted,
    StepFailed,
    TaskAnswered,
    announce,
    ignored_report,
    reduce,
)
from stepstream.workflows.human_tasks import ignored_answer

# NamedTuples, not frozen dataclasses: one or more per event, and a frozen dataclass's
# __init__ costs several times a tuple's.


class Delivery(NamedTuple):
    """One consumed event: its input topic's code in `applied`, its offset there, and the
    reducer's event. A start carries its tenant: a start of another tenant's execution
    with the same id is refused, never merged."""

    source: str
    offset: int
    event: Event
    tenant_id: str | None = None


class Emission(NamedTuple):
    """A command to send, decided by delivery number `cause`, in `state` (what it is sent
    from)."""

    cause: int
    state: ExecutionState
    command: Command


class Change(NamedTuple):
    """Delivery number `cause` moved the execution from `before` to `after`."""

    cause: int
    before: ExecutionState
    after: ExecutionState
    commands: tuple[Command, ...]


@dataclass
class BatchDecision:
    state: ExecutionState
    applied: dict[str, int] | None  # offsets to write with `state`
    write: bool = False  # the checkpoint changed: write `state` and `applied`
    emissions: list[Emission] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    ignored: list[Emission] = field(default_factory=list)  # reports not applied, and why
    foreign_starts: list[int] = field(default_factory=list)  # deliveries to refuse


def apply_batch(
    state: ExecutionState,
    tenant_id: str,
    applied: Mapping[str, int] | None,
    deliveries: Sequence[Delivery],
) -> BatchDecision:
    """Apply `deliveries`, in order, to the execution's checkpoint (`state` and
    `applied`; `applied` None for an execution not written yet, created by its start)."""
    offsets = None if applied is None else dict(applied)
    decision = BatchDecision(state, offsets)
    for index, delivery in enumerate(deliveries):
        event = delivery.event
        if offsets is not None:
            if isinstance(event, Started) and delivery.tenant_id not in (None, tenant_id):
                decision.foreign_starts.append(index)
                continue
            last = offsets.get(delivery.source, -1)
            if delivery.offset <= last:
                if delivery.offset == last:  # once per input topic, not per copy
                    decision.emissions += [Emission(index, state, c) for c in announce(state)]
                continue
        after, commands = reduce(state, event)
        if after is state:
            if isinstance(event, StepCompleted | StepFailed | TaskAnswered):
                if isinstance(event, TaskAnswered):
                    ignored = ignored_answer(state, event)
                else:
                    ignored = ignored_report(state, event)
                if ignored is not None:  # said once per delivery; a redelivery says it again
                    decision.ignored.append(Emission(index, state, ignored))
                    decision.emissions.append(Emission(index, state, ignored))
            elif isinstance(event, EventArrived):
                refusal = refused_event(state, event)
                if refusal is not None:  # back to the correlator: an event is never lost
                    decision.emissions.append(Emission(index, state, refusal))
            continue  # a duplicate or stale event: nothing to write
        decision.changes.append(Change(index, state, after, commands))
        decision.emissions += [Emission(index, after, c) for c in commands]
        state = after
        offsets = {**(offsets or {}), delivery.source: delivery.offset}
        decision.write = True
    decision.state, decision.applied = state, offsets
    return decision
