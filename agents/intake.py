"""Intake: idempotent start by execution_id; pin the definition, or reject with a reason;
rate-limit per user and tenant, rejecting or deferring starts over the limit.

The verdicts are decided by `stepstream.workflows.admission` and `agents.admission`;
this agent resolves definitions, checks it still owns the partition, and sends what
the verdicts say. A deferred queue's wake is a RateLimitWake event on the tenant's
partition (table writes need the partition's context), armed as a due event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from faust.types import EventT, StreamT
from redis.exceptions import RedisError

from stepstream.agents.admission import Request, StartGate, Wake
from stepstream.agents.child_events import child_ended
from stepstream.agents.rate_limiter import RateLimiter
from stepstream.agents.start_watchdog import install as install_start_watchdog
from stepstream.infra.cache import write_rate_stats
from stepstream.infra.metrics import METRICS
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.engine import ConsumedMessage, Engine
from stepstream.streams.events import envelope, event_id, now_ms
from stepstream.workflows import WorkflowDefinition, definition_to_dict
from stepstream.workflows.admission import Admission, Verdict, check_nesting, screen

log = logging.getLogger(__name__)

RATE_STATS_MIRROR_SECONDS = 2.0


class Intake:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.names = engine.names
        self.tables = engine.stream_tables()
        self.limiter = RateLimiter(engine.settings, self.tables.rate_counts, self.tables.rate_stats)
        self.gate = StartGate(self.tables.started, self.tables.rate_deferred, self.limiter)
        self.encoded: dict[tuple[str, int], tuple[WorkflowDefinition, str]] = {}

    def definition_json(self, definition: WorkflowDefinition) -> str:
        """The definition as WorkflowStarted carries it, encoded once per version: a
        version never changes, and encoding it per start was a sixth of the intake's CPU."""
        known = self.encoded.get((definition.id, definition.version))
        if known is None or known[0] is not definition:
            text = json.dumps(definition_to_dict(definition), separators=(",", ":"))
            known = self.encoded[(definition.id, definition.version)] = (definition, text)
        return known[1]

    async def lookup(self, request: Request, version: int) -> WorkflowDefinition | None:
        catalog = await self.engine.definitions()
        return await catalog.lookup(request["workflow_id"], version)

    async def handle(self, event: EventT[Any]) -> None:
        try:
            decoded = CODEC.decode(event.value)
        except EventCodecError as error:
            await self.engine.dead_letter(event.message, error)
            return
        if decoded.name == "WorkflowStartRequested":
            await self.start_requested(decoded.record, event.message)
        elif decoded.name == "RateLimitWake":
            await self.wake(decoded.record["scope"], event.message)
        elif decoded.name == "RetentionDue":
            # The coordinator deleted these checkpoints (agents.retention), in this
            # event's partition, where their start rows live.
            self.gate.forget([entry["execution_id"] for entry in decoded.record["retired"]])
        else:
            await self.engine.dead_letter(
                event.message, f"unexpected {decoded.name} on {self.names.workflow_start}"
            )

    async def start_requested(self, request: Request, message: ConsumedMessage) -> None:
        settings = self.engine.settings
        admission = screen(request, self.gate.seen(request), settings.max_input_bytes)
        if admission is None:
            admission = check_nesting(request, settings.max_nesting_depth)
        definition = None
        if admission is None:
            definition = await self.lookup(request, request["workflow_version"])
            if not self.engine.owns(message):
                return  # the partition moved while the definition was resolved
            admission, wake = self.gate.admit(request, definition, now_ms())
            if wake is not None:
                self.arm(wake)
        await self.act(request, admission, definition)

    async def wake(self, scope: str, message: ConsumedMessage) -> None:
        """Admit the scope's deferred starts, in order, while the window allows."""
        queued: list[Request] = self.tables.rate_deferred.get(scope.encode()) or []
        wanted = {(r["workflow_id"], r["workflow_version"]) for r in queued}
        catalog = await self.engine.definitions()
        definitions = {pair: await catalog.lookup(*pair) for pair in wanted}
        if not self.engine.owns(message):
            return  # the partition moved while the definitions were resolved
        verdicts, wake = self.gate.wake(scope, definitions, now_ms())
        if wake is not None:
            self.arm(wake)
        for request, admission in verdicts:
            pair = (request["workflow_id"], request["workflow_version"])
            await self.act(request, admission, definitions.get(pair))

    async def act(
        self, request: Request, admission: Admission, definition: WorkflowDefinition | None
    ) -> None:
        """Send what a verdict says: WorkflowStarted (again, for a start seen before), or
        WorkflowRejected with its reason; a deferred start sends nothing yet."""
        match admission.verdict:
            case Verdict.ADMIT if definition is not None:
                await self.announce_start(request, definition)
            case Verdict.READMIT:
                # Its WorkflowStarted may have been lost with a crashed worker (delivery
                # rule 2): emitted again, pinned to the same version; the coordinator
                # ignores it when the execution exists.
                log.info("start of %s seen before: announced again", request["execution_id"])
                pinned = await self.lookup(request, admission.pinned_version)
                if pinned is not None:
                    await self.announce_start(request, pinned)
            case Verdict.REJECT:
                METRICS.executions.labels("rejected").inc()
                record = envelope(
                    "rejected",
                    request,
                    code=admission.code,
                    reason=admission.reason,
                    limit=admission.limit,
                    reset_at=admission.reset_at_ms,
                )
                await self.engine.send(
                    self.names.workflow_rejected,
                    request["execution_id"],
                    "WorkflowRejected",
                    record,
                )
                refused = child_ended(
                    self.names, request, "rejected", error=f"{admission.code}: {admission.reason}"
                )
                if refused is not None:  # a sub-workflow's child: its parent's step fails
                    await self.engine.send(*refused)

    async def announce_start(self, request: Request, definition: WorkflowDefinition) -> None:
        pinned = {**request, "workflow_version": definition.version}
        record = envelope(
            "started",
            pinned,
            input_json=request["input_json"],
            definition_json=self.definition_json(definition),
            parent=request.get("parent"),
        )
        await self.engine.send(
            self.names.executions, request["execution_id"], "WorkflowStarted", record
        )

    def arm(self, wake: Wake) -> None:
        record = {
            "event_id": event_id(wake.scope, "wake", wake.due_ms),
            "tenant_id": wake.tenant_id,
            "scope": wake.scope,
            "timestamp": wake.due_ms,
        }
        self.engine.due.arm(
            wake.due_ms, self.names.workflow_start, wake.tenant_id, "RateLimitWake", record
        )

    async def mirror_rate_stats(self, redis: aioredis.Redis) -> None:
        changed = self.limiter.take_changed()
        if not changed:
            return
        try:
            await write_rate_stats(redis, self.engine.settings.topic_prefix, changed)
        except RedisError as error:  # stats only: try again with the next change
            self.limiter.changed |= set(changed)
            log.warning("rate stats not mirrored to Redis: %r", error)

    def rearm_deferred(self) -> None:
        """A worker taking over partitions wakes their waiting queues at once."""
        for key, queue in self.tables.rate_deferred.items():
            if queue:
                self.arm(Wake(now_ms(), key.decode(), queue[0]["tenant_id"]))


def install(engine: Engine, redis: Callable[[], aioredis.Redis]) -> Intake:
    """The faust wiring: the agent on workflow-start, the rate statistics' mirror to
    Redis, the tables' recovery and the start watchdog."""
    intake = Intake(engine)
    tables = intake.tables
    install_start_watchdog(engine, tables.started)

    @engine.app.agent(engine.topics[engine.names.workflow_start], name="intake")
    async def run(stream: StreamT[Any]) -> None:
        await engine.consume(stream, intake.handle)

    @engine.app.timer(interval=RATE_STATS_MIRROR_SECONDS)  # type: ignore[untyped-decorator]
    async def mirror_rate_stats() -> None:
        await intake.mirror_rate_stats(redis())

    @tables.rate_stats.on_recover
    async def mirror_taken_over_totals() -> None:
        """A worker taking over partitions mirrors their totals in full: what the last
        owner counted in its final seconds may not have reached Redis."""
        intake.limiter.changed |= {key.decode() for key in tables.rate_stats.keys()}

    @tables.rate_deferred.on_recover
    async def rearm_deferred() -> None:
        intake.rearm_deferred()

    return intake
