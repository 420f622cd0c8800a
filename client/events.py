"""Events from outside, as a producer sends them: the EventSent record (the same one
any language may write, README "The event contract"), keyed by what it is addressed by."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from stepstream.streams.events import now_ms
from stepstream.workflows.parsing import EVENT_NAME

MAX_PAYLOAD_BYTES = 262_144


class EventNotSent(ValueError):
    """An event the client will not send: a bad name, key or payload."""


def event_sent(
    name: str,
    correlation_key: str,
    payload: Mapping[str, Any] | None,
    tenant_id: str,
    *,
    scope: str = "key",
    event_id: str | None = None,
    ttl_seconds: float | None = None,
    sender: str | None = None,
) -> dict[str, Any]:
    """The EventSent record; its Kafka key is `correlation_key`. Without an `event_id`
    one is made up, so a retry of the same event must pass the id it was given."""
    if not EVENT_NAME.fullmatch(name):
        raise EventNotSent(f"event name {name!r}: letters, digits, '_', '.', ':' or '-'")
    if not correlation_key:
        raise EventNotSent("the correlation key is empty")
    if not tenant_id:
        raise EventNotSent("the tenant is empty: an event goes to one tenant's executions")
    payload_json = json.dumps(dict(payload or {}), separators=(",", ":"))
    if len(payload_json.encode()) > MAX_PAYLOAD_BYTES:
        raise EventNotSent(f"the payload is over {MAX_PAYLOAD_BYTES} bytes of JSON")
    if ttl_seconds is not None and ttl_seconds < 0:
        raise EventNotSent("ttl_seconds must not be negative")
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "timestamp": now_ms(),
        "name": name,
        "correlation_key": correlation_key,
        "scope": scope,
        "payload_json": payload_json,
        "ttl_ms": None if ttl_seconds is None else int(ttl_seconds * 1000),
        "sender": sender,
    }
