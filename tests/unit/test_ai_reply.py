"""Strict parsing of AI provider replies, the rules classifier, and AI cache keys."""

from __future__ import annotations

import json

import pytest

from stepstream.infra.ai import InvalidAIReply, RulesClassifier, parse_reply
from stepstream.infra.priority import ai_cache_key


def reply(content: object) -> dict:
    text = content if isinstance(content, str) else json.dumps(content)
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def test_a_well_formed_reply_is_read() -> None:
    decision = parse_reply(reply({"priority": "URGENT", "reason": " Gas smell. "}), "m1")
    assert (decision.priority, decision.reason, decision.source) == ("URGENT", "Gas smell.", "m1")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": []},
        reply("not json"),
        reply(["HIGH"]),
        reply({"priority": "CRITICAL", "reason": "x"}),
        reply({"priority": "HIGH"}),
        reply({"priority": "HIGH", "reason": "  "}),
        reply({"priority": "high", "reason": "x"}),
    ],
)
def test_anything_else_is_an_invalid_reply(body: dict) -> None:
    with pytest.raises(InvalidAIReply):
        parse_reply(body, "m1")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Smell of gas in the hallway", "URGENT"),
        ("Pipe burst in bathroom", "HIGH"),
        ("Dishwasher not working", "MEDIUM"),
        ("Paint the fence", "LOW"),
        ("Gaskets need replacing", "LOW"),  # whole words only: 'gas' is not in 'gaskets'
    ],
)
async def test_rules_classifier_is_deterministic(title: str, expected: str) -> None:
    decision = await RulesClassifier().classify(title, "", None)
    assert decision.priority == expected and decision.source == "rules"


def test_cache_keys_normalise_arguments_and_scope_by_tenant() -> None:
    a = ai_cache_key("t1", "priority", "classify", "m", {"title": "Leak  in Sink", "c": None})
    b = ai_cache_key("t1", "priority", "classify", "m", {"title": "leak in sink", "c": None})
    assert a == b
    assert a != ai_cache_key(
        "t2", "priority", "classify", "m", {"title": "leak in sink", "c": None}
    )
    assert a != ai_cache_key(
        "t1", "priority", "classify", "m2", {"title": "leak in sink", "c": None}
    )
