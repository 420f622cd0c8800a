"""Priority assignment: the provider interface, and the local rules classifier that
answers when no AI provider is configured (its answers say `source: rules`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

PRIORITIES = ("LOW", "MEDIUM", "HIGH", "URGENT")


@dataclass(frozen=True)
class PriorityDecision:
    priority: str
    reason: str
    source: str  # "rules", or the provider's model name


class PriorityClassifier(Protocol):
    async def classify(
        self, title: str, description: str, category: str | None
    ) -> PriorityDecision:
        """Assign one of PRIORITIES, with a reason."""


# First match wins, most severe first. Words are matched whole, case-insensitively.
_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "URGENT",
        "a safety hazard",
        (
            "gas",
            "fire",
            "smoke",
            "sparks",
            "flood",
            "flooding",
            "carbon monoxide",
            "electrocution",
            "collapse",
        ),
    ),
    (
        "HIGH",
        "damage that spreads or a home without an essential service",
        (
            "leak",
            "leaking",
            "burst",
            "no heat",
            "no hot water",
            "sewage",
            "broken lock",
            "no power",
            "mold",
        ),
    ),
    (
        "MEDIUM",
        "a failing appliance or fixture",
        ("broken", "not working", "clogged", "blocked", "noisy", "drip", "dripping"),
    ),
)


class RulesClassifier:
    """Deterministic keyword rules: the same text always gets the same priority."""

    async def classify(
        self, title: str, description: str, category: str | None
    ) -> PriorityDecision:
        text = f"{title} {description}".lower()
        for priority, why, words in _RULES:
            for word in words:
                if re.search(rf"\b{re.escape(word)}\b", text):
                    return PriorityDecision(priority, f"mentions '{word}': {why}", "rules")
        return PriorityDecision("LOW", "no urgent keyword found", "rules")
