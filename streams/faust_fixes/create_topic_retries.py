"""Correction 11: a topic faust creates at start-up survives a broker that just died.

faust creates some topics itself when a worker starts (the leader assignor's topic, the
tables' changelogs): `Transport._really_create_topic` asks a broker of the client's
metadata for the controller, then sends CreateTopics to that node. A broker killed a
moment before is still in that metadata (and still named as controller by brokers that
have not fenced it yet); `client.send` to it raises NodeNotReadyError, and the worker
exits at start-up. Seen here: tests/integration/test_cluster.py starting a worker right
after one node of a 3-node cluster was SIGKILLed. The fix tries the creation again,
after a metadata refresh, backing off from 0.2 s to 5 s, for up to 60 s, whenever the
failure is one Kafka calls retriable (a node not ready, a lost connection, a timeout, a
node no longer the controller); an answer about the topic itself (a refused config, no
authorization) is raised at once, as before.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Transport._really_create_topic and Transport._get_controller_node, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/drivers/aiokafka.py
Upstream: none found.
Way out: retire it when faust creates topics through aiokafka's admin client, which finds
a live controller itself (check on every upgrade).
Test: tests/unit/test_create_topic_retries.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.errors import KafkaError
from faust.transport.drivers.aiokafka import Transport

DEADLINE_SECONDS = 60.0
FIRST_BACKOFF_SECONDS, LONGEST_BACKOFF_SECONDS = 0.2, 5.0

_create = Transport._really_create_topic  # noqa: SLF001 - faust internals


def retriable(error: BaseException) -> bool:
    if isinstance(error, KafkaError):
        return bool(error.retriable)
    # faust's own words for a node that is no longer (or not yet) the controller.
    return isinstance(error, RuntimeError) and "Invalid controller" in str(error)


async def _really_create_topic(
    self: Transport, owner: Any, client: Any, topic: str, *args: Any, **kwargs: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    backoff = FIRST_BACKOFF_SECONDS
    while True:
        try:
            await _create(self, owner, client, topic, *args, **kwargs)
            return
        except Exception as error:
            if not retriable(error) or time.monotonic() + backoff > deadline:
                raise
            owner.log.warning(
                "Creating topic %r failed (%r): trying again in %.1f s", topic, error, backoff
            )
            client.force_metadata_update()
            await asyncio.sleep(backoff)  # a back-off, not a synchronisation
            backoff = min(backoff * 2, LONGEST_BACKOFF_SECONDS)


def apply() -> None:
    Transport._really_create_topic = _really_create_topic  # type: ignore[method-assign]  # noqa: SLF001
