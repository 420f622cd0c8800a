"""The OpenAI-compatible client against a fake provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from stepstream.infra.ai import AIProviderUnavailable, InvalidAIReply, OpenAICompatibleClassifier


class FakeProvider:
    """Answers /v1/chat/completions from a script of (status, body) replies."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"headers": dict(request.headers), "body": await request.json()})
        if self.delay:
            await asyncio.sleep(self.delay)  # the behaviour under test: a slow provider
        status, body = self.script.pop(0) if self.script else (500, {"error": "script empty"})
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, content_type="application/json")


def completion(priority: str, reason: str) -> dict[str, Any]:
    content = json.dumps({"priority": priority, "reason": reason})
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield fake, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def client(base_url: str, **options: Any) -> OpenAICompatibleClassifier:
    return OpenAICompatibleClassifier(base_url, "sk-test", "fake-model", backoff=0.01, **options)


async def test_a_reply_becomes_a_decision_and_the_request_is_well_formed(
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.script = [(200, completion("HIGH", "Water damage spreads."))]
    decision = await client(url).classify("Leak", "Under the sink", "plumbing")
    assert (decision.priority, decision.reason, decision.source) == (
        "HIGH",
        "Water damage spreads.",
        "fake-model",
    )
    sent = fake.requests[0]
    assert sent["headers"]["Authorization"] == "Bearer sk-test"
    assert sent["body"]["model"] == "fake-model"
    assert json.loads(sent["body"]["messages"][1]["content"])["category"] == "plumbing"


async def test_429_and_5xx_are_retried_with_backoff(provider: tuple[FakeProvider, str]) -> None:
    fake, url = provider
    fake.script = [
        (429, {"error": "slow down"}),
        (503, {"error": "busy"}),
        (200, completion("LOW", "Cosmetic.")),
    ]
    decision = await client(url).classify("Scuff", "", None)
    assert decision.priority == "LOW" and len(fake.requests) == 3


async def test_a_provider_that_keeps_failing_is_unavailable(
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.script = [(500, {})] * 4
    with pytest.raises(AIProviderUnavailable, match="HTTP 500"):
        await client(url, max_retries=3).classify("x", "", None)
    assert len(fake.requests) == 4


async def test_an_invalid_reply_fails_clearly_without_retrying(
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.script = [(200, completion("SOMEDAY", "whenever"))]
    with pytest.raises(InvalidAIReply, match="SOMEDAY"):
        await client(url).classify("x", "", None)
    fake.script = [(401, {"error": "bad key"})]
    with pytest.raises(InvalidAIReply, match="401"):
        await client(url).classify("x", "", None)
    assert len(fake.requests) == 2


async def test_a_slow_provider_times_out_and_is_retried(provider: tuple[FakeProvider, str]) -> None:
    fake, url = provider
    fake.delay = 0.5
    fake.script = [(200, completion("LOW", "late"))] * 2
    with pytest.raises(AIProviderUnavailable, match="Timeout"):
        await client(url, timeout=0.1, max_retries=1).classify("x", "", None)
    assert len(fake.requests) == 2
