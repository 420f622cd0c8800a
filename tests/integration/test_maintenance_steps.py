"""The maintenance steps on real PostgreSQL: results, idempotency, one-statement
assignment, and technician capacity under concurrent assignments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from stepstream.demo.data import seed
from stepstream.infra.ai import RulesClassifier
from stepstream.infra.priority import PriorityService
from stepstream.steps.maintenance import MaintenanceSteps, NoTechnicianAvailable
from stepstream.steps.registry import StepContext


class CountingPool:
    """A pool that counts the statements sent through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0

    async def fetchrow(self, *args: Any) -> Any:
        self.statements += 1
        return await self.pool.fetchrow(*args)

    async def execute(self, *args: Any) -> Any:
        self.statements += 1
        return await self.pool.execute(*args)

    async def fetch(self, *args: Any) -> Any:
        self.statements += 1
        return await self.pool.fetch(*args)


@pytest.fixture
async def pool(schema_database_url: str) -> AsyncIterator[CountingPool]:
    pool = await asyncpg.create_pool(schema_database_url, min_size=1, max_size=12)
    async with pool.acquire() as connection:
        await seed(connection)
    yield CountingPool(pool)
    await pool.close()


@pytest.fixture
def published() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def steps(pool: CountingPool, published: list[dict[str, Any]]) -> MaintenanceSteps:
    async def get_pool() -> Any:
        return pool

    async def publish(context: StepContext, notification: dict[str, Any]) -> None:
        published.append(notification)

    @contextlib.asynccontextmanager
    async def priority() -> AsyncIterator[PriorityService]:
        yield PriorityService(RulesClassifier(), "rules")

    return MaintenanceSteps(get_pool, priority, publish)


async def ids(pool: CountingPool, sql: str) -> int:
    return int(await pool.pool.fetchval(sql))


def context(
    execution_id: str, step_id: str, steps: dict[str, Any] | None = None, **workflow_input: Any
) -> StepContext:
    return StepContext(
        execution_id=execution_id,
        workflow_id="maintenance-request",
        workflow_version=1,
        step_id=step_id,
        step_type="x",
        attempt=1,
        idempotency_key=f"{execution_id}/{step_id}/1",
        tenant_id="tenant-a",
        user_id="user-1",
        input=workflow_input,
        steps=steps or {},
        config={},
    )


async def new_request(
    steps: MaintenanceSteps,
    pool: CountingPool,
    execution_id: str,
    title: str = "Kitchen sink is leaking",
) -> int:
    lindenhof = await ids(pool, "SELECT id FROM properties WHERE name = 'Lindenhof'")
    sink = await ids(pool, "SELECT id FROM assets WHERE name = 'Kitchen sink'")
    output = await steps.create_request(
        context(execution_id, "step-1", property_id=lindenhof, asset_id=sink, title=title)
    )
    return int(output["request_id"])


async def test_create_request_is_idempotent_under_redelivery(
    steps: MaintenanceSteps, pool: CountingPool, run_token: str
) -> None:
    first = await new_request(steps, pool, f"{run_token}-c1")
    again = await new_request(steps, pool, f"{run_token}-c1")
    assert first == again
    assert (
        await ids(
            pool,
            f"SELECT count(*) FROM maintenance_requests "
            f"WHERE idempotency_key = '{run_token}-c1/step-1'",
        )
        == 1
    )


async def test_priority_comes_from_the_rules_when_no_provider_is_configured(
    steps: MaintenanceSteps, pool: CountingPool, run_token: str
) -> None:
    request_id = await new_request(steps, pool, f"{run_token}-p1")
    output = await steps.assign_priority(
        context(f"{run_token}-p1", "step-2", {"step-1": {"request_id": request_id}})
    )
    assert (output["priority"], output["priority_source"]) == ("HIGH", "rules")
    assert "leaking" in output["reason"]
    row = await pool.pool.fetchrow(
        "SELECT priority, priority_source FROM maintenance_requests WHERE id = $1", request_id
    )
    assert tuple(row) == ("HIGH", "rules")


async def test_a_notification_is_written_and_published_once(
    steps: MaintenanceSteps,
    pool: CountingPool,
    published: list[dict[str, Any]],
    run_token: str,
) -> None:
    request_id = await new_request(steps, pool, f"{run_token}-n1")
    ctx = context(f"{run_token}-n1", "step-3", {"step-1": {"request_id": request_id}})
    first = await steps.send_notification(ctx)
    second = await steps.send_notification(ctx)
    assert first == second
    assert len(published) == 1 and published[0]["request_id"] == request_id
    assert (
        await ids(pool, f"SELECT count(*) FROM notifications WHERE request_id = {request_id}") == 1
    )


async def test_the_nearest_skilled_active_technician_is_assigned_in_one_statement(
    steps: MaintenanceSteps, pool: CountingPool, run_token: str
) -> None:
    request_id = await new_request(steps, pool, f"{run_token}-t1")
    ctx = context(f"{run_token}-t1", "step-4", {"step-2": {"request_id": request_id}})
    before = pool.statements
    output = await steps.assign_technician(ctx)
    assert pool.statements - before == 1
    # Eli Away is nearer but inactive; Ben Wire is near but has no plumbing skill.
    assert output["technician"] == "Ana Plumb" and not output["already_assigned"]
    workload = "SELECT workload FROM technicians WHERE name = 'Ana Plumb'"
    assigned = await ids(pool, workload)
    again = await steps.assign_technician(ctx)  # redelivered: same technician, no new load
    assert again["technician_id"] == output["technician_id"] and again["already_assigned"]
    assert await ids(pool, workload) == assigned


async def test_concurrent_assignments_never_exceed_capacity(
    steps: MaintenanceSteps, pool: CountingPool, run_token: str
) -> None:
    # A place and a skill of its own, so exactly one technician (capacity 4) qualifies.
    court = await ids(
        pool,
        "INSERT INTO properties (name, latitude, longitude)"
        " VALUES ('Capacity Court', 40.4, -3.7) RETURNING id",
    )
    pipes = await pool.pool.fetchval(
        "INSERT INTO assets (property_id, name, category) VALUES ($1, 'Pipes', 'capacity-test')"
        " RETURNING id",
        court,
    )
    await pool.pool.execute(
        "INSERT INTO technicians (name, skills, latitude, longitude, capacity)"
        " VALUES ('Madrid Plumber', '{capacity-test}', 40.4, -3.7, 4)"
    )
    request_ids = []
    for n in range(12):
        output = await steps.create_request(
            context(
                f"{run_token}-cap{n}",
                "step-1",
                property_id=court,
                asset_id=pipes,
                title="Dripping pipe",
            )
        )
        request_ids.append(output["request_id"])
    results = await asyncio.gather(
        *(
            steps.assign_technician(
                context(f"{run_token}-cap{n}", "step-4", {"step-1": {"request_id": request_id}})
            )
            for n, request_id in enumerate(request_ids)
        ),
        return_exceptions=True,
    )
    assigned = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, NoTechnicianAvailable)]
    assert len(assigned) == 4 and len(refused) == 8, results
    assert {r["technician"] for r in assigned} == {"Madrid Plumber"}
    assert await ids(pool, "SELECT workload FROM technicians WHERE name = 'Madrid Plumber'") == 4


async def test_a_reassignment_moves_the_request_to_another_technician_once(
    steps: MaintenanceSteps, pool: CountingPool, run_token: str
) -> None:
    request_id = await new_request(steps, pool, f"{run_token}-r1")
    given = {"step-1": {"request_id": request_id}}
    first = await steps.assign_technician(context(f"{run_token}-r1", "step-4", given))
    workload = "SELECT workload FROM technicians WHERE id = {}"
    before = {t: await ids(pool, workload.format(t)) for t in (first["technician_id"],)}
    ctx = context(f"{run_token}-r1", "step-7", given)
    moved = await steps.reassign_technician(ctx)
    assert moved["technician_id"] != first["technician_id"]
    assert moved["previous_technician_id"] == first["technician_id"]
    assert not moved["already_reassigned"]
    assert await ids(pool, workload.format(first["technician_id"])) == (
        before[first["technician_id"]] - 1
    ), "the first technician's workload is given back"
    row = await pool.pool.fetchrow(
        "SELECT technician_id FROM maintenance_requests WHERE id = $1", request_id
    )
    assert row["technician_id"] == moved["technician_id"]
    load = await ids(pool, workload.format(moved["technician_id"]))
    again = await steps.reassign_technician(ctx)  # redelivered: the same choice, no new load
    assert again["technician_id"] == moved["technician_id"] and again["already_reassigned"]
    assert await ids(pool, workload.format(moved["technician_id"])) == load


async def test_the_residents_of_the_requests_property_come_from_one_statement(
    steps: MaintenanceSteps, pool: CountingPool, run_token: str
) -> None:
    request_id = await new_request(steps, pool, f"{run_token}-r1")
    before = pool.statements
    output = await steps.list_residents(
        context(f"{run_token}-r1", "residents", {"create": {"request_id": request_id}})
    )
    assert pool.statements - before == 1
    assert output["request_id"] == request_id
    assert [(r["name"], r["contact"], r["channel"]) for r in output["residents"]] == [
        ("Mia Linden", "mia@lindenhof.example", "email"),
        ("Noah Linden", "+49 30 1111 2222", "sms"),
        ("Ola Linden", "ola@lindenhof.example", "email"),
    ]


async def test_each_resident_is_notified_once_on_their_channel(
    steps: MaintenanceSteps,
    pool: CountingPool,
    published: list[dict[str, Any]],
    run_token: str,
) -> None:
    execution = f"{run_token}-r2"
    request_id = await new_request(steps, pool, execution)
    listed = await steps.list_residents(
        context(execution, "residents", {"create": {"request_id": request_id}})
    )
    for _delivery in range(2):  # every instance delivered twice
        for index, resident in enumerate(listed["residents"]):
            instance = replace(
                context(execution, f"notify[{index}]", {"residents": listed}),
                item=resident,
                index=index,
            )
            await steps.send_notification(instance)
    assert [(n["recipient"], n["channel"]) for n in published] == [
        ("mia@lindenhof.example", "email"),
        ("+49 30 1111 2222", "sms"),
        ("ola@lindenhof.example", "email"),
    ]
    rows = await pool.pool.fetchval(
        "SELECT count(*) FROM notifications WHERE request_id = $1", request_id
    )
    assert rows == 3
