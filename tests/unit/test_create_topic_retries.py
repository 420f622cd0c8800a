"""Correction 11: faust's own topic creation (Transport._really_create_topic, run as
is) against a client whose metadata still names a broker that just died."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import NodeNotReadyError, TopicAuthorizationFailedError
from faust.transport.drivers.aiokafka import Transport
from mode import Service

from stepstream.streams.faust_fixes import create_topic_retries


class Client:
    """The cluster as a worker sees it a moment after node 2 was killed: node 1 still
    names node 2 as the controller until the metadata is refreshed."""

    def __init__(self, create_error: int = 0) -> None:
        self.controller, self.dead = 2, {2}
        self.refreshed, self.created_on = 0, []  # type: ignore[var-annotated]
        self.create_error = create_error
        self.cluster = SimpleNamespace(
            topics=lambda: set(), brokers=lambda: [SimpleNamespace(nodeId=1)]
        )

    async def send(self, node_id: int, request: Any) -> Any:
        if node_id in self.dead:
            raise NodeNotReadyError(f"Attempt to send a request to node {node_id}")
        if "Metadata" in type(request).__name__:
            return SimpleNamespace(controller_id=self.controller)
        self.created_on.append(node_id)
        return SimpleNamespace(topic_errors=[("leader", self.create_error, "no")])

    def force_metadata_update(self) -> None:
        self.refreshed += 1
        self.controller = 1


async def create(client: Client, how: Any) -> None:
    transport = Transport.__new__(Transport)  # faust's methods, no connection of its own
    await how(transport, Service(), client, "leader", 1, 3)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(create_topic_retries, "FIRST_BACKOFF_SECONDS", 0.01)


async def test_without_the_correction_the_worker_fails_at_start_up() -> None:
    with pytest.raises(NodeNotReadyError):
        await create(Client(), create_topic_retries._create)


async def test_the_creation_is_tried_again_on_the_controller_named_after_a_refresh() -> None:
    client = Client()
    await create(client, create_topic_retries._really_create_topic)
    assert client.created_on == [1] and client.refreshed == 1


async def test_an_answer_about_the_topic_itself_is_raised_at_once() -> None:
    client = Client(create_error=TopicAuthorizationFailedError.errno)
    client.controller, client.dead = 1, set()
    with pytest.raises(TopicAuthorizationFailedError):
        await create(client, create_topic_retries._really_create_topic)
    assert client.refreshed == 0
