"""Priority assignment: the provider interface, and the local rules classifier that
answers when no AI provider is configured (its answers say `source: rules`)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

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


class InvalidAIReply(Exception):
    """The provider answered, but not with a priority we can use. Not retryable: the
    priority step turns it into a PermanentStepError (infra knows no step types)."""


class AIProviderUnavailable(Exception):
    """The provider kept failing (429, 5xx, network); another attempt may succeed."""


SYSTEM_PROMPT = (
    "You triage property maintenance requests. Answer with a JSON object only: "
    '{"priority": one of "LOW", "MEDIUM", "HIGH", "URGENT", "reason": a short sentence}.'
)


def parse_reply(body: Any, model: str) -> PriorityDecision:
    """Strict: a chat completion whose first message is a JSON object with a known
    priority and a non-empty reason. Anything else is an InvalidAIReply."""
    try:
        content = body["choices"][0]["message"]["content"]
        answer = json.loads(content)
    except (KeyError, IndexError, TypeError, json.JSONDecodeError) as error:
        raise InvalidAIReply(
            f"reply is not a chat completion with JSON content: {error!r}"
        ) from None
    if not isinstance(answer, dict):
        raise InvalidAIReply(f"reply content is not a JSON object: {content!r}")
    priority, reason = answer.get("priority"), answer.get("reason")
    if priority not in PRIORITIES:
        raise InvalidAIReply(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidAIReply("reply has no reason")
    return PriorityDecision(str(priority), reason.strip(), model)


class OpenAICompatibleClassifier:
    """Chat completions over HTTP (OpenAI's API shape, which many providers serve)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._client = client or httpx.AsyncClient()

    async def close(self) -> None:
        await self._client.aclose()

    async def classify(
        self, title: str, description: str, category: str | None
    ) -> PriorityDecision:
        payload = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": json.dumps(
                        {"title": title, "description": description, "category": category}
                    ),
                },
            ],
        }
        last = "no attempt made"
        for attempt in range(self._max_retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.post(
                    f"{self.base_url}/chat/completions",
                    json=payload,
                    headers=self._headers,
                    timeout=self._timeout,
                )
            except httpx.HTTPError as error:  # timeouts, refused connections
                last = repr(error)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise InvalidAIReply(f"provider refused the request: HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                raise InvalidAIReply("reply is not JSON") from None
            return parse_reply(body, self.model)
        raise AIProviderUnavailable(
            f"{self.base_url} failed {self._max_retries + 1} times; last: {last}"
        )
