"""Registered definitions in PostgreSQL, for queries and audit. The compacted Kafka topic
stays the source every worker reads; this copy is written by `stepstream register`."""

from __future__ import annotations

import json

import asyncpg

from stepstream.workflows import WorkflowDefinition, definition_to_dict

SAVE = """
INSERT INTO workflow_definitions (id, version, body) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (id, version) DO NOTHING
"""


async def save_definition(connection: asyncpg.Connection, definition: WorkflowDefinition) -> bool:
    """True when this version was new to the table."""
    status = await connection.execute(
        SAVE, definition.id, definition.version, json.dumps(definition_to_dict(definition))
    )
    return bool(status.endswith(" 1"))
