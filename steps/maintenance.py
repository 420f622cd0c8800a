"""The property-maintenance steps, on PostgreSQL.

Side effects are keyed by `execution_id/step_id` (not the attempt): a retry after a
timeout whose first attempt did commit must find that work, not do it again.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from stepstream.infra.ai import InvalidAIReply
from stepstream.infra.metrics import METRICS
from stepstream.infra.priority import PriorityService
from stepstream.steps.packages import StepPackage
from stepstream.steps.registry import PermanentStepError, StepContext

Publish = Callable[[StepContext, dict[str, Any]], Awaitable[None]]

CREATE_REQUEST = """
INSERT INTO maintenance_requests (tenant_id, property_id, asset_id, title, description,
                                  idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
RETURNING id, (xmax = 0) AS created
"""

READ_REQUEST = """
SELECT r.title, r.description, a.category
FROM maintenance_requests r LEFT JOIN assets a ON a.id = r.asset_id
WHERE r.id = $1
"""

SET_PRIORITY = """
UPDATE maintenance_requests
SET priority = $2, priority_source = $3, priority_reason = $4, updated_at = now()
WHERE id = $1
"""

OUTBOX = """
WITH inserted AS (
    INSERT INTO notifications (request_id, channel, recipient, body, idempotency_key)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, published_at
)
SELECT id, published_at FROM inserted
UNION ALL
SELECT id, published_at FROM notifications WHERE idempotency_key = $5
LIMIT 1
"""

MARK_PUBLISHED = "UPDATE notifications SET published_at = now() WHERE id = $1"

# One statement: read the request with its property and asset, pick the nearest active
# technician with the skill and free capacity (least workload breaks ties), and assign.
# The request row is locked, so two assignments of one request serialise and the second
# sees the first's technician; a technician row is locked while its workload grows, and
# the table's CHECK (workload <= capacity) backs the capacity rule whatever happens.
ASSIGN_TECHNICIAN = """
WITH request AS (
    SELECT r.id, r.technician_id, p.latitude, p.longitude, a.category
    FROM maintenance_requests r
    JOIN properties p ON p.id = r.property_id
    LEFT JOIN assets a ON a.id = r.asset_id
    WHERE r.id = $1
    FOR UPDATE OF r
), candidate AS (
    SELECT t.id
    FROM technicians t, request
    WHERE request.technician_id IS NULL
      AND t.active AND t.workload < t.capacity
      AND (request.category IS NULL OR request.category = ANY (t.skills))
    ORDER BY (t.latitude - request.latitude) ^ 2
             + ((t.longitude - request.longitude) * cos(radians(request.latitude))) ^ 2,
             t.workload, t.id
    LIMIT 1
    FOR UPDATE OF t
), technician AS (
    UPDATE technicians t SET workload = t.workload + 1
    FROM candidate WHERE t.id = candidate.id
    RETURNING t.id, t.name, t.latitude, t.longitude
), assigned AS (
    UPDATE maintenance_requests r
    SET technician_id = technician.id, status = 'assigned', updated_at = now()
    FROM technician WHERE r.id = $1
    RETURNING r.id
)
SELECT request.id AS request_id, request.latitude, request.longitude,
       COALESCE(request.technician_id, technician.id) AS technician_id,
       COALESCE(earlier.name, technician.name) AS technician_name,
       COALESCE(earlier.latitude, technician.latitude) AS technician_latitude,
       COALESCE(earlier.longitude, technician.longitude) AS technician_longitude,
       request.technician_id IS NOT NULL AS already_assigned
FROM request
LEFT JOIN technician ON true
LEFT JOIN technicians earlier ON earlier.id = request.technician_id
"""

# A technician who did not accept: the request goes to the nearest other one with the
# skill and capacity, and the first one's workload is given back. `reassignment_key`
# (the step's idempotency key) makes a redelivered reassignment return its choice.
REASSIGN_TECHNICIAN = """
WITH request AS (
    SELECT r.id, r.technician_id, r.reassignment_key, p.latitude, p.longitude, a.category
    FROM maintenance_requests r
    JOIN properties p ON p.id = r.property_id
    LEFT JOIN assets a ON a.id = r.asset_id
    WHERE r.id = $1
    FOR UPDATE OF r
), candidate AS (
    SELECT t.id
    FROM technicians t, request
    WHERE request.reassignment_key IS DISTINCT FROM $2
      AND t.id IS DISTINCT FROM request.technician_id
      AND t.active AND t.workload < t.capacity
      AND (request.category IS NULL OR request.category = ANY (t.skills))
    ORDER BY (t.latitude - request.latitude) ^ 2
             + ((t.longitude - request.longitude) * cos(radians(request.latitude))) ^ 2,
             t.workload, t.id
    LIMIT 1
    FOR UPDATE OF t
), released AS (
    UPDATE technicians t SET workload = t.workload - 1
    FROM request, candidate WHERE t.id = request.technician_id
    RETURNING t.id
), technician AS (
    UPDATE technicians t SET workload = t.workload + 1
    FROM candidate WHERE t.id = candidate.id
    RETURNING t.id, t.name, t.latitude, t.longitude
), assigned AS (
    UPDATE maintenance_requests r
    SET technician_id = technician.id, status = 'assigned', reassignment_key = $2,
        updated_at = now()
    FROM technician WHERE r.id = $1
    RETURNING r.id
)
SELECT request.id AS request_id, request.latitude, request.longitude,
       request.reassignment_key IS NOT DISTINCT FROM $2 AS already_reassigned,
       CASE WHEN request.reassignment_key IS NOT DISTINCT FROM $2 THEN request.technician_id
            ELSE technician.id END AS technician_id,
       CASE WHEN request.reassignment_key IS NOT DISTINCT FROM $2 THEN NULL
            ELSE request.technician_id END AS previous_technician_id,
       COALESCE(technician.name, current.name) AS technician_name,
       COALESCE(technician.latitude, current.latitude) AS technician_latitude,
       COALESCE(technician.longitude, current.longitude) AS technician_longitude
FROM request
LEFT JOIN technician ON true
LEFT JOIN technicians current ON current.id = request.technician_id
    AND request.reassignment_key IS NOT DISTINCT FROM $2
"""

STEP_TYPES = (
    "CREATE_MAINTENANCE_REQUEST",
    "ASSIGN_PRIORITY_AI",
    "SEND_NOTIFICATION",
    "ASSIGN_TECHNICIAN",
    "REASSIGN_TECHNICIAN",
    "LIST_RESIDENTS",
)

# The request's property's residents, in one statement; a request of a property with
# none gives one row with null resident columns (and no row: no such request).
RESIDENTS = """
SELECT r.id AS request_id, p.id AS resident_id, p.name, p.contact, p.channel
FROM maintenance_requests r LEFT JOIN residents p ON p.property_id = r.property_id
WHERE r.id = $1
ORDER BY p.id
"""


class NoTechnicianAvailable(Exception):
    """Retryable: capacity frees up as work is finished."""


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance, for the step's output (the SQL orders by a cheaper proxy)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def request_id_of(context: StepContext) -> int:
    for output in context.steps.values():
        if isinstance(output, dict) and isinstance(output.get("request_id"), int):
            return int(output["request_id"])
    raise PermanentStepError(f"{context.step_id} needs a dependency that outputs request_id")


class MaintenanceSteps:
    """The four steps as a step package. The pool is the worker's; the priority service
    (its AI client and Redis cache) is the package's resource, opened by the first
    ASSIGN_PRIORITY_AI and closed with the worker."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[asyncpg.Pool]],
        priority: Callable[[], AbstractAsyncContextManager[PriorityService]],
        publish_notification: Publish,
    ) -> None:
        self._pool = pool
        self._publish = publish_notification
        self.package = StepPackage("maintenance")
        self.package.resource("priority")(priority)
        handlers = (
            self.create_request,
            self.assign_priority,
            self.send_notification,
            self.assign_technician,
            self.reassign_technician,
            self.list_residents,
        )
        for step_type, handler in zip(STEP_TYPES, handlers, strict=True):
            self.package.step(step_type)(handler)

    async def create_request(self, context: StepContext) -> dict[str, Any]:
        data = context.input
        try:
            values = (
                context.tenant_id,
                int(data["property_id"]),
                int(data["asset_id"]) if data.get("asset_id") is not None else None,
                str(data["title"]),
                str(data.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PermanentStepError(
                f"input needs property_id, title (and optionally asset_id, description): {error!r}"
            ) from None
        pool = await self._pool()
        try:
            with METRICS.timed_query("create_request"):
                row = await pool.fetchrow(CREATE_REQUEST, *values, context.step_key)
        except asyncpg.ForeignKeyViolationError as error:
            raise PermanentStepError(f"unknown property or asset: {error.detail}") from None
        return {"request_id": row["id"], "created": row["created"]}

    async def assign_priority(self, context: StepContext) -> dict[str, Any]:
        request_id = request_id_of(context)
        pool = await self._pool()
        with METRICS.timed_query("read_request"):
            request = await pool.fetchrow(READ_REQUEST, request_id)
        if request is None:
            raise PermanentStepError(f"maintenance request {request_id} does not exist")
        priority: PriorityService = await self.package.get("priority")
        try:
            decision = await priority.decide(
                context.tenant_id, request["title"], request["description"], request["category"]
            )
        except InvalidAIReply as error:  # asking again would get the same answer
            raise PermanentStepError(str(error)) from error
        with METRICS.timed_query("set_priority"):
            await pool.execute(
                SET_PRIORITY, request_id, decision.priority, decision.source, decision.reason
            )
        return {
            "request_id": request_id,
            "priority": decision.priority,
            "reason": decision.reason,
            "priority_source": decision.source,
        }

    async def list_residents(self, context: StepContext) -> dict[str, Any]:
        """Who lives in the request's property: the list a `forEach` notifies."""
        request_id = request_id_of(context)
        pool = await self._pool()
        with METRICS.timed_query("list_residents"):
            rows = await pool.fetch(RESIDENTS, request_id)
        if not rows:
            raise PermanentStepError(f"maintenance request {request_id} does not exist")
        residents = [
            {"resident_id": row["resident_id"], "name": row["name"]}
            | {"contact": row["contact"], "channel": row["channel"]}
            for row in rows
            if row["resident_id"] is not None
        ]
        return {"request_id": request_id, "residents": residents}

    async def send_notification(self, context: StepContext) -> dict[str, Any]:
        """To `config.recipient` (else the tenant), or, in a fan-out over residents, to
        the instance's resident on their channel."""
        request_id = request_id_of(context)
        recipient = str(context.config.get("recipient", f"tenant:{context.tenant_id}"))
        channel = str(context.config.get("channel", "email"))
        if isinstance(context.item, dict) and "contact" in context.item:
            recipient = str(context.item["contact"])
            channel = str(context.item.get("channel", channel))
        body = f"Maintenance request {request_id} received: {context.input.get('title', '')}"
        pool = await self._pool()
        with METRICS.timed_query("write_outbox"):
            row = await pool.fetchrow(
                OUTBOX, request_id, channel, recipient, body, context.step_key
            )
        if row is None:  # another delivery of this step is writing it right now
            raise RuntimeError(f"notification {context.step_key} is being written; retry")
        notification = {
            "notification_id": row["id"],
            "request_id": request_id,
            "channel": channel,
            "recipient": recipient,
            "body": body,
        }
        if row["published_at"] is None:  # publish once; a redelivery after it is a no-op
            await self._publish(context, notification)
            await pool.execute(MARK_PUBLISHED, row["id"])
        return notification

    async def assign_technician(self, context: StepContext) -> dict[str, Any]:
        request_id = request_id_of(context)
        pool = await self._pool()
        with METRICS.timed_query("assign_technician"):
            row = await pool.fetchrow(ASSIGN_TECHNICIAN, request_id)
        if row is None:
            raise PermanentStepError(f"maintenance request {request_id} does not exist")
        if row["technician_id"] is None:
            raise NoTechnicianAvailable(f"no active technician with capacity for {request_id}")
        return {
            "request_id": request_id,
            "technician_id": row["technician_id"],
            "technician": row["technician_name"],
            "distance_km": round(
                distance_km(
                    row["latitude"],
                    row["longitude"],
                    row["technician_latitude"],
                    row["technician_longitude"],
                ),
                2,
            ),
            "already_assigned": row["already_assigned"],
        }

    async def reassign_technician(self, context: StepContext) -> dict[str, Any]:
        """The request goes to another technician (the one assigned did not accept)."""
        request_id = request_id_of(context)
        pool = await self._pool()
        with METRICS.timed_query("reassign_technician"):
            row = await pool.fetchrow(REASSIGN_TECHNICIAN, request_id, context.step_key)
        if row is None:
            raise PermanentStepError(f"maintenance request {request_id} does not exist")
        if row["technician_id"] is None:
            raise NoTechnicianAvailable(f"no other technician with capacity for {request_id}")
        return {
            "request_id": request_id,
            "technician_id": row["technician_id"],
            "technician": row["technician_name"],
            "previous_technician_id": row["previous_technician_id"],
            "already_reassigned": row["already_reassigned"],
            "distance_km": round(
                distance_km(
                    row["latitude"],
                    row["longitude"],
                    row["technician_latitude"],
                    row["technician_longitude"],
                ),
                2,
            ),
        }
