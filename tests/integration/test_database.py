"""Migrations on the real PostgreSQL: idempotent, with the indexes queries rely on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from stepstream.infra.db import load_migrations, migrate


async def test_migrations_apply_once_and_record_their_version(
    pg: asyncpg.Connection, schema_database_url: str
) -> None:
    # schema_database_url already migrated this run's schema; a second run is a no-op.
    assert await migrate(pg) == []
    versions = await pg.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in versions] == [
        (m.version, m.name) for m in load_migrations()
    ]


async def test_the_execution_indexes_exist(
    pg: asyncpg.Connection, schema_database_url: str, pg_schema: str
) -> None:
    rows = await pg.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", pg_schema
    )
    definitions = {r["indexname"]: r["indexdef"] for r in rows}
    assert "(workflow_id, status)" in definitions["workflow_executions_workflow_status"]
    assert "(started_at)" in definitions["workflow_executions_started_at"]
    assert "(status, created_at)" in definitions["workflow_executions_status_created"]
    partial = definitions["workflow_executions_user"]
    assert "(user_id)" in partial and "WHERE (user_id IS NOT NULL)" in partial
    assert "(execution_id)" in definitions["workflow_execution_steps_execution"]
    assert "UNIQUE" in definitions["maintenance_requests_idempotency_key_key"]
    assert "UNIQUE" in definitions["notifications_idempotency_key_key"]


async def test_a_technician_can_never_exceed_capacity(
    pg: asyncpg.Connection, schema_database_url: str
) -> None:
    technician = await pg.fetchval(
        "INSERT INTO technicians (name, skills, latitude, longitude, capacity)"
        " VALUES ('Ada', '{plumbing}', 52.5, 13.4, 1) RETURNING id"
    )
    try:
        await pg.execute("UPDATE technicians SET workload = workload + 1 WHERE id = $1", technician)
        with pytest.raises(asyncpg.CheckViolationError):
            await pg.execute(
                "UPDATE technicians SET workload = workload + 1 WHERE id = $1", technician
            )
    finally:  # the schema is shared by this run's tests: leave no technician behind
        await pg.execute("DELETE FROM technicians WHERE id = $1", technician)


def test_migration_files_are_named_and_numbered(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"2_bad\.sql"):
        load_migrations(tmp_path)


def test_register_validates_publishes_and_stores_the_definition(
    schema_database_url: str, kafka_bootstrap: str, run_token: str
) -> None:
    example = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request.yaml"
    env = {
        **os.environ,
        "DATABASE_URL": schema_database_url,
        "STEPSTREAM_TOPIC_PREFIX": f"test-{run_token}-register",
    }
    command = [sys.executable, "-m", "stepstream", "register", str(example)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "registered: maintenance-request version 2" in first.stdout
    assert "already registered" in again.stdout

    async def stored() -> list[tuple[str, int]]:
        connection = await asyncpg.connect(schema_database_url)
        try:
            rows = await connection.fetch(
                "SELECT id, version FROM workflow_definitions WHERE id = 'maintenance-request'"
            )
            return [tuple(row) for row in rows]
        finally:
            await connection.close()

    assert asyncio.run(stored()) == [("maintenance-request", 2)]
