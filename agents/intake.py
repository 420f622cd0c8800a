"""Intake: idempotent start by execution_id; pin the definition, or reject with a reason;
rate-limit per user and tenant, rejecting or deferring starts over the limit.

Deferred starts wait in a changelog-backed table, one FIFO queue per user scope; while a
scope has a queue, its new starts join the end of it, so they are admitted in order. A
timer turns due queues into RateLimitWake events on the tenant's partition (table writes
need the partition's context), where the intake admits what the window allows.
"""

from __future__ import annotations

import heapq
import json
import logging
from typing import Any

from faust.types import EventT, StreamT
from redis.exceptions import RedisError

from stepstream.agents.rate_limiter import RateLimiter
from stepstream.agents.start_watchdog import install as install_start_watchdog
from stepstream.infra.cache import write_rate_stats
from stepstream.infra.metrics import METRICS
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.engine import ConsumedMessage, Engine
from stepstream.streams.events import envelope, event_id, now_ms
from stepstream.workflows import WorkflowDefinition, definition_to_dict
from stepstream.workflows.rate_limit import OverLimitPolicy
from stepstream.workflows.requests import check_start

log = logging.getLogger(__name__)

RATE_STATS_MIRROR_SECONDS = 2.0


def install(engine: Engine) -> None:
    names = engine.names
    tables = engine.stream_tables()
    limiter = RateLimiter(engine.settings, tables.rate_counts, tables.rate_stats)
    deferred = tables.rate_deferred
    wakes: list[tuple[int, str, str]] = []  # (due_ms, scope, tenant)

    encoded: dict[tuple[str, int], tuple[WorkflowDefinition, str]] = {}

    def definition_json(definition: WorkflowDefinition) -> str:
        """The definition as WorkflowStarted carries it, encoded once per version: a
        version never changes, and encoding it per start was a sixth of the intake's CPU."""
        known = encoded.get((definition.id, definition.version))
        if known is None or known[0] is not definition:
            text = json.dumps(definition_to_dict(definition), separators=(",", ":"))
            known = encoded[(definition.id, definition.version)] = (definition, text)
        return known[1]

    async def reject(
        request: dict[str, Any],
        code: str,
        reason: str,
        limit: str | None = None,
        reset_at: int | None = None,
    ) -> None:
        METRICS.executions.labels("rejected").inc()
        record = envelope(
            "rejected", request, code=code, reason=reason, limit=limit, reset_at=reset_at
        )
        await engine.send(
            names.workflow_rejected, request["execution_id"], "WorkflowRejected", record
        )

    async def admit(
        request: dict[str, Any], definition: WorkflowDefinition, first: bool = True
    ) -> None:
        """Record the start (its time and pinned version) and emit WorkflowStarted; for a
        start already admitted (`first` False), emit the same WorkflowStarted again."""
        if first:
            tables.started[request["execution_id"].encode()] = [now_ms(), definition.version]
        pinned = {**request, "workflow_version": definition.version}
        record = envelope(
            "started",
            pinned,
            input_json=request["input_json"],
            definition_json=definition_json(definition),
        )
        await engine.send(names.executions, request["execution_id"], "WorkflowStarted", record)

    async def resolve(request: dict[str, Any]) -> WorkflowDefinition | None:
        """The definition to pin, or None after rejecting the request for its reason."""
        catalog = await engine.definitions()
        definition = await catalog.lookup(request["workflow_id"], request["workflow_version"])
        if definition is None:
            wanted = request["workflow_version"] or "latest"
            await reject(
                request,
                "unknown_workflow",
                f"workflow {request['workflow_id']!r} version {wanted} is not registered",
            )
            return None
        try:
            workflow_input = json.loads(request["input_json"])
        except json.JSONDecodeError as error:
            await reject(request, "invalid_input", f"input is not JSON: {error}")
            return None
        if not isinstance(workflow_input, dict):
            await reject(request, "invalid_input", "input must be a JSON object")
            return None
        return definition

    async def readmit(request: dict[str, Any], started: Any) -> None:
        """A start seen before. Its WorkflowStarted may have been lost with a crashed
        worker (delivery rule 2), so it is emitted again, pinned to the same version;
        the coordinator ignores it when the execution exists."""
        pinned = started[1] if isinstance(started, list) else request["workflow_version"]
        catalog = await engine.definitions()
        definition = await catalog.lookup(request["workflow_id"], pinned)
        if definition is not None:
            await admit(request, definition, first=False)

    async def start_requested(request: dict[str, Any], message: ConsumedMessage) -> None:
        invalid = check_start(
            request["execution_id"],
            request["workflow_id"],
            request["tenant_id"],
            request["user_id"],
            request["input_json"],
            engine.settings.max_input_bytes,
        )
        if invalid is not None:
            await reject(request, invalid.code, invalid.reason, invalid.limit)
            return
        started = tables.started.get(request["execution_id"].encode())
        if started is not None:
            log.info("start of %s seen before: announced again", request["execution_id"])
            await readmit(request, started)
            return
        definition = await resolve(request)
        if definition is None or not engine.owns(message):
            return  # rejected, or the partition moved while the definition was resolved
        if not limiter.enabled:
            await admit(request, definition)
            return
        scope = limiter.queue_scope(request, definition)
        queued = deferred.get(scope.encode())
        if queued:  # earlier starts of this user wait: this one waits behind them
            deferred[scope.encode()] = [*queued, request]
            limiter.record(request["tenant_id"], "deferred", scope.split(":")[0])
            return
        refusal = limiter.check(request, definition, now_ms())
        if refusal is None:
            limiter.count(request, definition, now_ms())
            await admit(request, definition)
        elif limiter.policy(definition) is OverLimitPolicy.DEFER:
            deferred[scope.encode()] = [request]
            heapq.heappush(wakes, (refusal.reset_at_ms, scope, request["tenant_id"]))
            limiter.record(request["tenant_id"], "deferred", refusal.scope)
        else:
            limiter.record(request["tenant_id"], "rejected", refusal.scope)
            await reject(
                request, "rate_limited", refusal.reason, refusal.limit, refusal.reset_at_ms
            )

    async def wake(scope: str, message: ConsumedMessage) -> None:
        """Admit the scope's deferred starts, in order, while the window allows."""
        queue = list(deferred.get(scope.encode()) or [])
        while queue:
            request = queue[0]
            if tables.started.get(request["execution_id"].encode()) is not None:
                queue.pop(0)  # the same start was requested twice while waiting
                continue
            definition = await resolve(request)
            if not engine.owns(message):
                return  # the partition moved while the definition was resolved
            if definition is None:
                queue.pop(0)
                continue
            refusal = limiter.check(request, definition, now_ms())
            if refusal is not None:
                heapq.heappush(wakes, (refusal.reset_at_ms, scope, request["tenant_id"]))
                break
            limiter.count(request, definition, now_ms())
            queue.pop(0)
            await admit(request, definition)
        if queue:
            deferred[scope.encode()] = queue
        elif deferred.get(scope.encode()) is not None:
            del deferred[scope.encode()]

    def forget(record: dict[str, Any]) -> None:
        """The coordinator deleted these executions' checkpoints (agents.retention): their
        start ids deduplicate no more. In the event's partition, where their rows live."""
        for entry in record["retired"]:
            key = entry["execution_id"].encode()
            if tables.started.get(key) is not None:
                del tables.started[key]

    async def handle(event: EventT[Any]) -> None:
        try:
            decoded = CODEC.decode(event.value)
        except EventCodecError as error:
            await engine.dead_letter(event.message, error)
            return
        if decoded.name == "WorkflowStartRequested":
            await start_requested(decoded.record, event.message)
        elif decoded.name == "RateLimitWake":
            await wake(decoded.record["scope"], event.message)
        elif decoded.name == "RetentionDue":
            forget(decoded.record)
        else:
            await engine.dead_letter(
                event.message, f"unexpected {decoded.name} on {names.workflow_start}"
            )

    install_start_watchdog(engine, tables.started)

    @engine.app.agent(engine.topics[names.workflow_start], name="intake")
    async def intake(stream: StreamT[Any]) -> None:
        await engine.consume(stream, handle)

    @engine.app.timer(interval=0.2)  # type: ignore[untyped-decorator]
    async def wake_due_scopes() -> None:
        now = now_ms()
        while wakes and wakes[0][0] <= now:
            due, scope, tenant = heapq.heappop(wakes)
            record = {
                "event_id": event_id(scope, "wake", due),
                "tenant_id": tenant,
                "scope": scope,
                "timestamp": due,
            }
            await engine.send(names.workflow_start, tenant, "RateLimitWake", record)

    @engine.app.timer(interval=RATE_STATS_MIRROR_SECONDS)  # type: ignore[untyped-decorator]
    async def mirror_rate_stats() -> None:
        changed = limiter.take_changed()
        if not changed:
            return
        try:
            await write_rate_stats(engine.redis(), engine.settings.topic_prefix, changed)
        except RedisError as error:  # stats only: try again with the next change
            limiter.changed |= set(changed)
            log.warning("rate stats not mirrored to Redis: %r", error)

    @tables.rate_stats.on_recover
    async def mirror_taken_over_totals() -> None:
        """A worker taking over partitions mirrors their totals in full: what the last
        owner counted in its final seconds may not have reached Redis."""
        limiter.changed |= {key.decode() for key in tables.rate_stats.keys()}

    @deferred.on_recover
    async def rearm_deferred() -> None:
        """A worker taking over partitions wakes their waiting queues at once."""
        for key, queue in deferred.items():
            if queue:
                heapq.heappush(wakes, (now_ms(), key.decode(), queue[0]["tenant_id"]))
