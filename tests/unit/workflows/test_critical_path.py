"""The critical path of an execution: properties over random DAGs and finish times."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from stepstream.workflows.critical_path import critical_path
from stepstream.workflows.definition import WorkflowDefinition
from tests.unit.workflows.strategies import dags


def test_the_path_follows_the_dependency_that_finished_last() -> None:
    depends_on = {
        "create": (),
        "priority": ("create",),
        "notify": ("create",),
        "assign": ("priority", "notify"),
    }
    finished = {"create": 10.0, "priority": 250.0, "notify": 40.0, "assign": 300.0}
    assert critical_path(depends_on, finished) == ["create", "priority", "assign"]


def test_no_finished_step_has_no_path() -> None:
    assert critical_path({"a": ()}, {}) == []


@given(dags(), st.data())
def test_every_path_is_a_chain_of_last_finishers(
    definition: WorkflowDefinition, data: st.DataObject
) -> None:
    depends_on = {s.id: s.depends_on for s in definition.steps}
    # A step finishes after its dependencies, as the engine runs them.
    finished: dict[str, float] = {}
    for step in sorted(definition.steps, key=lambda s: int(s.id[1:])):  # s{i} needs s{<i}
        start = max((finished[d] for d in step.depends_on), default=0.0)
        finished[step.id] = start + data.draw(st.integers(0, 1000))
    path = critical_path(depends_on, finished)
    assert path, "some step finished"
    assert finished[path[-1]] == max(finished.values())  # it ends with the last to finish
    assert not depends_on[path[0]]  # and starts at a step that waited for nothing
    for before, after in itertools.pairwise(path):
        assert before in depends_on[after]  # each link is a dependency
        assert finished[before] == max(finished[d] for d in depends_on[after])
