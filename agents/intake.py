"""Intake: idempotent start by execution_id; pin the definition or reject with a reason."""

from __future__ import annotations

import json
import logging
from typing import Any

from faust.types import EventT, StreamT

from agents.rate_limiter import RateLimiter
from schemas.codec import CODEC, EventCodecError
from streams.engine import Engine
from streams.events import envelope, now_ms
from workflows import definition_to_dict

log = logging.getLogger(__name__)


def install(engine: Engine) -> None:
    names = engine.names

    limiter = RateLimiter(engine.settings, engine.rate_counts, engine.rate_stats)

    async def reject(
        request: dict[str, Any],
        code: str,
        reason: str,
        limit: str | None = None,
        reset_at: int | None = None,
    ) -> None:
        record = envelope(
            "rejected", request, code=code, reason=reason, limit=limit, reset_at=reset_at
        )
        await engine.send(
            names.workflow_rejected, request["execution_id"], "WorkflowRejected", record
        )

    async def handle(event: EventT[Any]) -> None:
        try:
            decoded = CODEC.decode(event.value)
        except EventCodecError as error:
            await engine.dead_letter(event, error)
            return
        if decoded.name != "WorkflowStartRequested":
            await engine.dead_letter(event, f"unexpected {decoded.name} on {names.workflow_start}")
            return
        request = decoded.record
        key = request["execution_id"].encode()
        if engine.started.get(key) is not None:
            log.info("duplicate start of %s ignored", request["execution_id"])
            return
        catalog = await engine.definitions()
        definition = await catalog.lookup(request["workflow_id"], request["workflow_version"])
        if definition is None:
            wanted = request["workflow_version"] or "latest"
            await reject(
                request,
                "unknown_workflow",
                f"workflow {request['workflow_id']!r} version {wanted} is not registered",
            )
            return
        try:
            workflow_input = json.loads(request["input_json"])
        except json.JSONDecodeError as error:
            await reject(request, "invalid_input", f"input is not JSON: {error}")
            return
        if not isinstance(workflow_input, dict):
            await reject(request, "invalid_input", "input must be a JSON object")
            return
        refusal = limiter.admit(request, definition, now_ms())
        if refusal is not None:
            await reject(
                request, "rate_limited", refusal.reason, refusal.limit, refusal.reset_at_ms
            )
            return
        engine.started[key] = now_ms()
        pinned = {**request, "workflow_version": definition.version}
        record = envelope(
            "started",
            pinned,
            input_json=request["input_json"],
            definition_json=json.dumps(definition_to_dict(definition), separators=(",", ":")),
        )
        await engine.send(names.executions, request["execution_id"], "WorkflowStarted", record)

    @engine.app.agent(engine.topics[names.workflow_start], name="intake")
    async def intake(stream: StreamT[Any]) -> None:
        await engine.consume(stream, handle)
