"""The reducer's working copy of one transition, and how a step whose dependencies have
all finished is settled: queued to run, skipped, or failed by its condition."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stepstream.workflows import fanning
from stepstream.workflows.children import ChildInputError, child_execution_id, child_input
from stepstream.workflows.definition import HumanTask, Trigger, WaitFor
from stepstream.workflows.durations import DurationError, parse_instant
from stepstream.workflows.event_waits import CorrelationKeyError, correlation_key
from stepstream.workflows.expressions import EvaluationError
from stepstream.workflows.fan_out import instance_inputs, split_instance
from stepstream.workflows.human_tasks import AssigneeError, assignee
from stepstream.workflows.messages import (
    ArmTimer,
    Command,
    CompleteWorkflow,
    EmitStepReady,
    FailWorkflow,
    OpenTask,
    ScheduleTimeout,
    SkipStep,
    StartChild,
    Subscribe,
)
from stepstream.workflows.state import (
    ExecutionState,
    ExecutionStatus,
    Failure,
    StepMap,
    StepStatus,
    Transition,
    completed_outputs,
    deadline,
    in_flight_order,
)


class Unchanged:
    """For a field whose new value may be None: not given."""


UNCHANGED = Unchanged()


class Draft:
    """Mutable working copy of one transition; `finish` freezes it into the next state."""

    def __init__(self, state: ExecutionState) -> None:
        self.state = state
        self.steps = StepMap(state.steps)
        self.queue = list(state.queue)
        self.outstanding = state.outstanding
        self.completed = state.completed_steps
        self.skipped = state.skipped_steps
        self.failure = state.failure
        self.broken: list[Failure] = []  # steps whose condition could not be evaluated
        self.item_lists: dict[str, list[Any]] = {}  # fan-out steps' items, read once
        self.commands: list[Command] = []

    def dependency_finished(self, step_id: str) -> None:
        """`step_id` completed, failed for good or was skipped: its dependents count it,
        and those with every dependency finished are settled."""
        ready = []
        for dependent in self.state.definition.graph.dependents[step_id]:
            step = self.steps[dependent]
            self.steps[dependent] = step._replace(remaining=step.remaining - 1)
            if step.remaining == 1:
                ready.append(dependent)
        if ready:
            self.settle(ready)

    def settle(self, step_ids: Iterable[str]) -> None:
        """Decide steps whose dependencies have all finished: queue each to run, or skip
        it (which finishes it, and may settle its dependents in turn)."""
        queued = []
        for step_id in step_ids:
            reason = self.skip_reason(step_id)
            due = None
            if reason is None and self.steps[step_id].status is not StepStatus.FAILED:
                due = self.instant(step_id)
                self.check_key(step_id)
            if self.steps[step_id].status is StepStatus.FAILED:
                continue  # its condition broke: the transition fails it (`broken`)
            if reason is None:
                queued_step = self.steps[step_id]._replace(status=StepStatus.QUEUED, due_at_ms=due)
                self.steps[step_id] = queued_step
                queued.append(step_id)
            else:
                self.skip(step_id, reason)
        if queued:
            position = self.state.definition.graph.position
            self.queue = sorted([*self.queue, *queued], key=position.__getitem__)

    def skip(self, step_id: str, reason: str) -> None:
        self.steps[step_id] = self.steps[step_id]._replace(status=StepStatus.SKIPPED, error=reason)
        self.skipped += 1
        self.commands.append(SkipStep(step_id, reason))
        self.dependency_finished(step_id)

    def skip_reason(self, step_id: str) -> str | None:
        """Why the step must not run; None: it runs. The trigger rule first (decided only
        now that every dependency has finished), then the condition. A condition that
        cannot be evaluated fails the step instead (`broken`)."""
        definition = self.state.definition
        step = definition.step_by_id[step_id]
        if self.failure is not None and step.trigger is not Trigger.ALL_DONE:
            return f"the workflow is failing: step {self.failure.step_id} failed"
        if step.depends_on and (self.skipped or self.failure is not None):
            # Otherwise every dependency completed, and every rule says run.
            statuses = {d: self.steps[d].status for d in step.depends_on}
            if step.trigger is Trigger.NONE_FAILED:
                if all(s is StepStatus.SKIPPED for s in statuses.values()):
                    return "every dependency was skipped"
            elif step.trigger is Trigger.ALL_SUCCESS:
                for dependency, status in statuses.items():
                    if status is not StepStatus.COMPLETED:
                        return f"dependency {dependency} was {status} (trigger all_success)"
        condition = definition.conditions.get(step_id)
        if condition is None:
            return None
        outputs = self.outputs_of(condition.steps)
        try:
            if condition.evaluate(self.state.input, outputs):
                return None
        except EvaluationError as error:
            self.steps[step_id] = self.steps[step_id]._replace(
                status=StepStatus.FAILED, error=f"ConditionError: {error}"
            )
            self.broken.append(Failure(step_id, f"ConditionError: {error}"))
            return None
        return f"condition false: {condition.text} (saw {condition.saw(self.state.input, outputs)})"

    def outputs_of(self, step_ids: Iterable[str]) -> dict[str, Any]:
        return completed_outputs(self.steps, step_ids)

    def instant(self, step_id: str) -> int | None:
        """A `wait: {until}` step's due time, read now that its dependencies are done
        (None for other steps). One that cannot be read fails the step (`broken`)."""
        expression = self.state.definition.instants.get(step_id)
        if expression is None:
            return None
        outputs = self.outputs_of(expression.steps)
        try:
            return parse_instant(expression.value(self.state.input, outputs))
        except (EvaluationError, DurationError) as error:
            message = f"WaitError: until {expression.text}: {error}"
            self.steps[step_id] = self.steps[step_id]._replace(
                status=StepStatus.FAILED, error=message
            )
            self.broken.append(Failure(step_id, message))
            return None

    def check_key(self, step_id: str) -> None:
        """A `waitFor` step's correlation key or a human step's assignee, read now that
        its dependencies are done: one that cannot be read fails the step (`broken`), as
        a broken condition does."""
        definition = self.state.definition
        if step_id not in definition.correlation_keys and step_id not in definition.assignees:
            return
        try:
            correlation_key(definition, step_id, self.state.input, self.outputs_of)
            assignee(definition, step_id, self.state.input, self.outputs_of)
        except (CorrelationKeyError, AssigneeError) as error:
            message = f"{type(error).__name__}: {error}"
            self.steps[step_id] = self.steps[step_id]._replace(
                status=StepStatus.FAILED, error=message
            )
            self.broken.append(Failure(step_id, message))

    def fill_slots(self, at_ms: int) -> None:
        """Start queued steps while slots are free, then running fan-outs' next instances.
        A fan-out step gives its slot back when it begins (or completes at once, for an
        empty list, which may queue its dependents): the loop takes from the queue until
        it is empty or the slots are full."""
        while self.outstanding < self.state.max_outstanding and self.queue:
            step_id = self.queue.pop(0)
            self.outstanding += 1
            self.release(step_id, at_ms)
        for step_id in self.state.definition.fan_outs:
            fanning.release_instances(self, step_id, at_ms)

    def release(self, step_id: str, at_ms: int) -> None:
        """Emit step-ready for the step's next attempt."""
        self.send(step_id, self.steps[step_id].attempt + 1, at_ms)

    def send(self, step_id: str, attempt: int, at_ms: int) -> None:
        """Emit step-ready for this attempt of the step. A skipped dependency is absent
        from `steps` (not null): it has no output."""
        definition = self.state.definition
        step = self.steps[step_id]
        step_definition = definition.step(step_id)
        if step_definition.for_each is not None and step_id in definition.step_by_id:
            if attempt != step.attempt or step.status is not StepStatus.RUNNING:
                fanning.fan_out(self, step_id, attempt, at_ms)
            return  # sent again: its instances are sent on their own
        wait = step_definition.wait
        if wait is not None:
            self.arm(step_id, attempt, at_ms, wait.for_ms)
            return
        wait_for = step_definition.wait_for
        if wait_for is not None:
            self.listen(step_id, attempt, at_ms, wait_for)
            return
        if step_definition.child is not None:
            self.start_child(step_id, attempt, at_ms)
            return
        human = step_definition.human
        if human is not None:
            self.open_task(step_id, attempt, at_ms, human)
            return
        self.steps[step_id] = step._replace(
            status=StepStatus.RUNNING,
            attempt=attempt,
            retry_at_ms=None,
            ready_at_ms=at_ms,
            alive_at_ms=step.alive_at_ms if attempt == step.attempt else None,
        )
        outputs = {}
        for dependency in step_definition.depends_on:
            if self.steps[dependency].status is StepStatus.COMPLETED:
                outputs[dependency] = self.steps[dependency].output
        inputs: dict[str, Any] = {"input": self.state.input, "steps": outputs}
        if step_definition.for_each is not None:
            for_each, item, index = fanning.item_of(self, step_id)
            inputs = instance_inputs(inputs, for_each, item, index)
        self.commands.append(
            EmitStepReady(
                step_id=step_id,
                step_type=step_definition.type,
                attempt=attempt,
                inputs=inputs,
                config=step_definition.config,
                timeout_ms=definition.timeout_ms(step_id),
            )
        )
        due = deadline(definition, step_id, self.steps[step_id])
        if due is not None:
            self.commands.append(ScheduleTimeout(step_id, attempt, due))

    def arm(self, step_id: str, attempt: int, at_ms: int, for_ms: int | None) -> None:
        """Start a wait step's timer. The same attempt sent again (an announcement, a
        resume) keeps its due time: a timer never moves by being re-armed."""
        step = self.steps[step_id]
        if attempt == step.attempt and step.status is StepStatus.RUNNING:
            due, released = step.due_at_ms, step.ready_at_ms or at_ms
        else:
            released = at_ms
            due = at_ms + for_ms if for_ms is not None else step.due_at_ms
        due = released if due is None else due
        self.steps[step_id] = step._replace(
            status=StepStatus.RUNNING,
            attempt=attempt,
            retry_at_ms=None,
            ready_at_ms=released,
            due_at_ms=due,
        )
        self.commands.append(ArmTimer(step_id, attempt, due))

    def hold(self, step_id: str, attempt: int, at_ms: int, timeout_ms: int | None) -> int | None:
        """Run a wait that no worker runs (an event's, a person's) at `attempt`; its
        timeout's due time, armed. The same attempt sent again (an announcement, a resume)
        keeps its due time: a timeout never moves by being sent again."""
        step = self.steps[step_id]
        if attempt == step.attempt and step.status is StepStatus.RUNNING:
            due, released = step.due_at_ms, step.ready_at_ms or at_ms
        else:
            released = at_ms
            due = None if timeout_ms is None else at_ms + timeout_ms
        self.steps[step_id] = step._replace(
            status=StepStatus.RUNNING,
            attempt=attempt,
            retry_at_ms=None,
            ready_at_ms=released,
            due_at_ms=due,
        )
        if due is not None:
            self.commands.append(ArmTimer(step_id, attempt, due))
        return due

    def listen(self, step_id: str, attempt: int, at_ms: int, wait_for: WaitFor) -> None:
        """Begin a wait for an event: subscribe (the correlator takes the same attempt
        subscribed again as one subscription), and arm its timeout if it has one."""
        key = correlation_key(self.state.definition, step_id, self.state.input, self.outputs_of)
        self.commands.append(Subscribe(step_id, attempt, wait_for.event, key))
        self.hold(step_id, attempt, at_ms, wait_for.timeout_ms)

    def start_child(self, step_id: str, attempt: int, at_ms: int) -> None:
        """Start the child execution of this attempt (again, for the same attempt sent
        again: the intake takes the same id once). An input that cannot be read fails
        the step (`broken`)."""
        child = self.state.definition.step_by_id[step_id].child
        assert child is not None
        expressions = self.state.definition.child_inputs

        def evaluate(text: str) -> Any:
            expression = expressions[text]
            return expression.value(self.state.input, self.outputs_of(expression.steps))

        try:
            child_in = child_input(child, self.state.input, evaluate)
        except (EvaluationError, ChildInputError) as error:
            message = f"ChildInputError: {error}"
            self.steps[step_id] = self.steps[step_id]._replace(
                status=StepStatus.FAILED, attempt=attempt, error=message
            )
            self.outstanding -= 1
            self.broken.append(Failure(step_id, message))
            return
        self.hold(step_id, attempt, at_ms, None)
        child_id = child_execution_id(self.state.execution_id, step_id, attempt)
        self.commands.append(
            StartChild(step_id, attempt, child_id, child.workflow_id, child.version, child_in)
        )

    def open_task(self, step_id: str, attempt: int, at_ms: int, human: HumanTask) -> None:
        """Open a human task: announce it to whom it is for, and arm its timeout."""
        due = self.hold(step_id, attempt, at_ms, human.timeout_ms)
        whose = assignee(self.state.definition, step_id, self.state.input, self.outputs_of)
        self.commands.append(OpenTask(step_id, attempt, whose, due))

    def outputs(self) -> dict[str, Any]:
        """The completed steps' outputs, in plan order; skipped steps have none."""
        return {
            s: self.steps[s].output
            for s in self.state.definition.graph.order
            if self.steps[s].status is StepStatus.COMPLETED
        }

    def finish(
        self,
        status: ExecutionStatus | None = None,
        started_at_ms: int | None = None,
        finished_at_ms: int | Unchanged | None = UNCHANGED,
        replays: tuple[str, ...] | None = None,
        cancel_reason: str | Unchanged | None = UNCHANGED,
    ) -> Transition:
        """The next state. Built field by field: `dataclasses.replace` cost a third of
        an event's reduction (it inspects every field on every call)."""
        old = self.state
        state = ExecutionState(
            execution_id=old.execution_id,
            definition=old.definition,
            input=old.input,
            max_outstanding=old.max_outstanding,
            steps=self.steps,
            status=old.status if status is None else status,
            queue=tuple(self.queue),
            outstanding=self.outstanding,
            completed_steps=self.completed,
            skipped_steps=self.skipped,
            failure=self.failure,
            started_at_ms=old.started_at_ms if started_at_ms is None else started_at_ms,
            finished_at_ms=(
                old.finished_at_ms if isinstance(finished_at_ms, Unchanged) else finished_at_ms
            ),
            replays=old.replays if replays is None else replays,
            cancel_reason=(
                old.cancel_reason if isinstance(cancel_reason, Unchanged) else cancel_reason
            ),
            max_items=old.max_items,
        )
        return state, tuple(self.commands)


def fail(draft: Draft, step_id: str, error: str) -> bool:
    """`step_id` failed for good. Fail fast: nothing new starts, steps already running
    may finish. True: the workflow fails now. A workflow with cleanup steps (trigger
    all_done) fails only once those have run: until then every other step not started
    is skipped, and no retry is made."""
    if draft.failure is None:
        draft.failure = Failure(step_id, error)
    if not draft.state.definition.has_cleanup_steps:
        draft.queue.clear()
        return True
    reason = f"the workflow is failing: step {draft.failure.step_id} failed"
    for queued in list(draft.queue):
        if draft.state.definition.step_by_id[queued].trigger is not Trigger.ALL_DONE:
            draft.queue.remove(queued)
            draft.skip(queued, reason)
    for other in list(in_flight_order(draft.state.definition, draft.steps)):
        step = draft.steps[other]
        if step.status is StepStatus.RETRYING:
            draft.steps[other] = step._replace(
                status=StepStatus.FAILED, error=f"{step.error}; not retried: {reason}"
            )
            draft.outstanding -= 1
            if split_instance(other) is None:
                draft.dependency_finished(other)
            else:
                fanning.instance_finished(draft, other, step.finished_at_ms or 0)
    draft.dependency_finished(step_id)
    return False


def failed(draft: Draft, at_ms: int, **changes: Any) -> Transition:
    assert draft.failure is not None
    draft.commands.append(FailWorkflow(draft.failure.step_id, draft.failure.error, at_ms))
    return draft.finish(**{**changes, "status": ExecutionStatus.FAILED, "finished_at_ms": at_ms})


def advance(draft: Draft, at_ms: int, **changes: Any) -> Transition:
    """After steps finished or settled: fail the steps whose condition broke, start what
    the slots allow, and end the execution once nothing is left to run."""
    while True:  # starting steps may break some (a fan-out's items cannot be read)
        while draft.broken:
            broken = draft.broken.pop(0)
            if fail(draft, broken.step_id, broken.error):
                return failed(draft, at_ms, **changes)
        draft.fill_slots(at_ms)
        if not draft.broken:
            break
    if draft.failure is not None:
        if draft.outstanding == 0 and not draft.queue:
            return failed(draft, at_ms, **changes)
        return draft.finish(**changes)
    if draft.completed + draft.skipped == len(draft.state.definition.steps):
        draft.commands.append(CompleteWorkflow(draft.outputs(), at_ms))
        ended = {"status": ExecutionStatus.COMPLETED, "finished_at_ms": at_ms}
        return draft.finish(**{**changes, **ended})
    return draft.finish(**changes)
