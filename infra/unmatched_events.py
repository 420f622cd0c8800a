"""Events that no wait took within their time to live, as the persister recorded them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

LIST_UNMATCHED = """
SELECT tenant_id, name, scope, correlation_key, event_id, payload, sender, sent_at, expired_at
FROM workflow_unmatched_events
WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR name = $2)
ORDER BY expired_at DESC
LIMIT $3
"""


@dataclass(frozen=True)
class UnmatchedEvent:
    tenant_id: str
    name: str
    scope: str
    correlation_key: str
    event_id: str
    payload: Any
    sender: str | None
    sent_at: datetime
    expired_at: datetime


async def list_unmatched(
    connection: asyncpg.Connection, tenant_id: str | None, name: str | None, limit: int
) -> list[UnmatchedEvent]:
    """The latest unmatched events first; one query."""
    rows = await connection.fetch(LIST_UNMATCHED, tenant_id, name, limit)
    return [UnmatchedEvent(**{**dict(row), "payload": json.loads(row["payload"])}) for row in rows]
