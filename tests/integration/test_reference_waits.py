"""The reference workflow, version 3, on the real services: it waits for the technician's
acceptance, an event correlated by the request's id; with none before the timeout the
request goes to another technician through a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.data import seed
from stepstream.streams.settings import Settings
from stepstream.workflows import build_definition
from tests.integration.workers import engine_env, prepare, running_worker
from tests.waiting import wait_until

V3 = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request-v3.yaml"


async def place_of_our_own(database_url: str) -> dict[str, Any]:
    """A property, an asset and two technicians with a skill nobody else has: the
    assignments here meet no other test's."""
    connection = await asyncpg.connect(database_url)
    try:
        await seed(connection)
        court = await connection.fetchval(
            "INSERT INTO properties (name, latitude, longitude)"
            " VALUES ('Waiting Court', 48.1, 11.5) RETURNING id"
        )
        asset = await connection.fetchval(
            "INSERT INTO assets (property_id, name, category)"
            " VALUES ($1, 'Gate', 'gate-test') RETURNING id",
            court,
        )
        for name, longitude in (("Near Gatekeeper", 11.5), ("Far Gatekeeper", 11.9)):
            await connection.execute(
                "INSERT INTO technicians (name, skills, latitude, longitude, capacity)"
                " VALUES ($1, '{gate-test}', 48.1, $2, 10)",
                name,
                longitude,
            )
    finally:
        await connection.close()
    return {"property_id": court, "asset_id": asset, "title": "The gate does not close"}


@pytest.fixture(scope="module")
def engine(
    settings: Settings,
    run_token: str,
    schema_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    env = engine_env(settings, f"test-{run_token}-reference-v3", DATABASE_URL=schema_database_url)
    engine_settings = Settings.from_env(env)
    raw = yaml.safe_load(V3.read_text())
    (waiting,) = [step for step in raw["steps"] if "waitFor" in step]
    assert waiting["waitFor"]["timeout"] == "2h"
    waiting["waitFor"]["timeout"] = "3s"  # the written 2 h, shortened for the test
    asyncio.run(prepare(engine_settings, build_definition(raw)))
    with running_worker(engine_settings, env, "reference-v3", tmp_path_factory.mktemp("w")):
        yield engine_settings


def test_the_acceptance_completes_the_wait_and_its_absence_reassigns(
    engine: Settings, run_token: str
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        request = await place_of_our_own(engine.database_url)
        async with WorkflowClient(engine) as client:
            accepted_id = await client.start_workflow(
                "maintenance-request", request, "tenant-a", "u", f"{run_token}-accepted"
            )
            silent_id = await client.start_workflow(
                "maintenance-request", request, "tenant-a", "u", f"{run_token}-silent"
            )
            description = await client.definition("maintenance-request")
            assert description is not None and description.version == 3
            waiting = asyncio.ensure_future(client.wait_for(accepted_id, timeout=60))
            request_id = await _request_of(engine.database_url, f"{run_token}-accepted")
            await client.send_event(
                "technician-accepted", str(request_id), {"technician": "near"}, "tenant-a"
            )
            accepted = await waiting
            silent = await client.wait_for(silent_id, timeout=60)
            assert (accepted.status, silent.status) == ("completed", "completed")
            return accepted.outputs, silent.outputs

    accepted, silent = asyncio.run(scenario())
    assert accepted["step-6"] == {"technician": "near"}
    assert "step-7" not in accepted, "accepted in time: no reassignment"
    assert silent["step-6"]["timed_out"] is True
    assert silent["step-4"]["technician"] == "Near Gatekeeper"
    assert silent["step-7"]["technician"] == "Far Gatekeeper"
    assert silent["step-7"]["previous_technician_id"] == silent["step-4"]["technician_id"]


async def _request_of(database_url: str, execution_id: str) -> int:
    """The request the execution's first step created (its idempotency key names it)."""
    connection = await asyncpg.connect(database_url)
    try:
        found = await wait_until(
            lambda: connection.fetchval(
                "SELECT id FROM maintenance_requests WHERE idempotency_key = $1",
                f"{execution_id}/step-1",
            ),
            60,
            f"the request of {execution_id}",
        )
    finally:
        await connection.close()
    return int(found)
