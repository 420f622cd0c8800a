"""The intake's admission decisions (`workflows.admission`, `agents.admission`), run on
dicts in place of the changelog-backed tables: a start is admitted once whatever is
repeated, deferred starts of a user are admitted in the order they were asked for,
never past the limit, and none waits forever."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.agents.admission import StartGate, Wake
from stepstream.agents.rate_limiter import RateLimiter
from stepstream.streams.settings import Settings
from stepstream.workflows import StepDefinition, WorkflowDefinition
from stepstream.workflows.admission import Admission, Verdict, screen
from stepstream.workflows.rate_limit import window_start

EXAMPLES = settings(max_examples=200, deadline=None)
WINDOW_MS = 1_000
POINTS = 3
DEFINITION = WorkflowDefinition("w", 4, "w", (StepDefinition("a", "noop", ()),))


def request(execution_id: str, user: str, workflow: str = "w", body: str = "{}") -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "workflow_id": workflow,
        "workflow_version": 0,
        "tenant_id": "acme",
        "user_id": user,
        "input_json": body,
    }


@dataclass
class Intake:
    """The intake's flow around the gate, as agents.intake runs it, without Kafka."""

    policy: str
    now: int = 0
    gate: StartGate = field(init=False)
    wakes: list[Wake] = field(default_factory=list)
    admitted: list[tuple[int, str, str]] = field(default_factory=list)  # (when, user, id)
    verdicts: list[tuple[str, Admission]] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = {
            "WORKFLOW_RATE_LIMIT_POINTS": str(POINTS),
            "WORKFLOW_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_MS // 1000),
            "WORKFLOW_RATE_LIMIT_TENANT_POINTS": "1000",
            "WORKFLOW_RATE_LIMIT_POLICY": self.policy,
        }
        limiter = RateLimiter(Settings.from_env(env), {}, {})
        self.gate = StartGate({}, {}, limiter)

    def start(self, wanted: dict[str, Any]) -> Admission:
        admission = screen(wanted, self.gate.seen(wanted), max_input_bytes=1024)
        if admission is None:
            definition = DEFINITION if wanted["workflow_id"] == "w" else None
            admission, wake = self.gate.admit(wanted, definition, self.now)
            if wake is not None:
                assert wake.due_ms > self.now
                self.wakes.append(wake)
        self.record(wanted, admission)
        return admission

    def advance(self, by_ms: int) -> None:
        self.now += by_ms
        due = [w for w in self.wakes if w.due_ms <= self.now]
        self.wakes = [w for w in self.wakes if w.due_ms > self.now]
        for wake in due:
            verdicts, again = self.gate.wake(wake.scope, {("w", 0): DEFINITION}, self.now)
            for wanted, admission in verdicts:
                self.record(wanted, admission)
            if again is not None:
                self.wakes.append(again)

    def record(self, wanted: dict[str, Any], admission: Admission) -> None:
        self.verdicts.append((wanted["execution_id"], admission))
        if admission.verdict is Verdict.ADMIT:
            self.admitted.append((self.now, wanted["user_id"], wanted["execution_id"]))


actions = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.integers(0, 12), st.sampled_from(["ann", "bob"])),
        st.tuples(st.just("wait"), st.integers(1, 1500), st.just("")),
    ),
    max_size=40,
)


def run(policy: str, steps: list[tuple[str, int, str]]) -> tuple[Intake, list[tuple[str, str]]]:
    intake = Intake(policy)
    asked: list[tuple[str, str]] = []  # (user, id), first time each id is asked for
    owner: dict[str, str] = {}
    for action, number, user in steps:
        if action == "wait":
            intake.advance(number)
            continue
        execution_id = f"e{number}"
        user = owner.setdefault(execution_id, user)  # an id is one user's
        if execution_id not in {i for _, i in asked}:
            asked.append((user, execution_id))
        intake.start(request(execution_id, user))
    return intake, asked


@EXAMPLES
@given(actions)
def test_deferred_starts_are_admitted_once_in_order_within_the_limit_and_all_in_time(
    steps: list[tuple[str, int, str]],
) -> None:
    intake, asked = run("defer", steps)
    for _ in range(len(asked) // POINTS + 2):  # no more requests: every wait ends
        intake.advance(WINDOW_MS)
    ids = [execution_id for _, _, execution_id in intake.admitted]
    assert sorted(ids) == sorted(set(ids)) == sorted(i for _, i in asked)  # once, and all
    for user in ("ann", "bob"):
        mine = [i for u, i in asked if u == user]
        assert [i for _, u, i in intake.admitted if u == user] == mine  # in asking order
        per_window: dict[int, int] = {}
        for when, who, _ in intake.admitted:
            if who == user:
                start = window_start(when, WINDOW_MS)
                per_window[start] = per_window.get(start, 0) + 1
        assert max(per_window.values(), default=0) <= POINTS
    assert not intake.gate.deferred  # no queue left behind


@EXAMPLES
@given(actions)
def test_a_start_asked_for_again_is_readmitted_pinned_never_admitted_twice(
    steps: list[tuple[str, int, str]],
) -> None:
    intake, _ = run("reject", steps)
    admitted: set[str] = set()
    for execution_id, admission in intake.verdicts:
        if admission.verdict is Verdict.ADMIT:
            assert execution_id not in admitted
            admitted.add(execution_id)
        elif admission.verdict is Verdict.READMIT:
            assert execution_id in admitted and admission.pinned_version == DEFINITION.version
        else:
            assert admission.verdict is Verdict.REJECT and admission.code == "rate_limited"
            assert admission.reset_at_ms is not None
    assert not intake.wakes and not intake.gate.deferred  # rejected starts never wait


def test_bad_requests_are_rejected_with_their_reason_before_any_limit_counts() -> None:
    intake = Intake("reject")
    cases = {
        "unknown_workflow": request("u1", "ann", workflow="nope"),
        "invalid_input": request("u2", "ann", body="[1]"),
        "invalid_request": request("bad/id", "ann"),
        "input_too_large": request("u3", "ann", body=json.dumps({"x": "y" * 2000})),
    }
    for code, wanted in cases.items():
        admission = intake.start(wanted)
        assert (admission.verdict, admission.code) == (Verdict.REJECT, code), admission.reason
    assert intake.gate.limiter.counts == {} and intake.gate.started == {}
