"""A step's task queue: validated as part of a topic name, kept through the stored form,
and exempt from the worker's step types (another worker serves it)."""

from __future__ import annotations

import pytest

from stepstream.workflows import InvalidDefinition, build_definition, definition_to_dict

RAW = {
    "id": "queued",
    "version": 1,
    "steps": [
        {"id": "a", "type": "noop"},
        {"id": "b", "type": "CHARGE_CARD", "queue": "billing-eu_2", "dependsOn": ["a"]},
    ],
}


def test_a_queue_survives_the_stored_form() -> None:
    definition = build_definition(RAW, step_types={"noop"})  # CHARGE_CARD is served elsewhere
    assert definition.step_by_id["b"].queue == "billing-eu_2"
    assert definition.step_by_id["a"].queue is None
    assert build_definition(definition_to_dict(definition)) == definition


def test_a_step_without_a_queue_still_needs_a_known_type() -> None:
    unqueued = {**RAW, "steps": [RAW["steps"][0], {"id": "b", "type": "CHARGE_CARD"}]}
    with pytest.raises(InvalidDefinition, match="unknown step type 'CHARGE_CARD'"):
        build_definition(unqueued, step_types={"noop"})


@pytest.mark.parametrize("queue", ["", "Billing", "a.b", "x" * 65, 7, "-lead"])
def test_a_queue_name_must_fit_in_a_topic_name(queue: object) -> None:
    bad = {**RAW, "steps": [RAW["steps"][0], {**RAW["steps"][1], "queue": queue}]}
    with pytest.raises(InvalidDefinition, match=r"steps\[1\]\.queue: must be lowercase"):
        build_definition(bad)
