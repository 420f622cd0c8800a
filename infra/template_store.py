"""Templates in PostgreSQL: `stepstream register` saves them and reads them back to
expand the `use:` steps of the workflows it registers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from stepstream.workflows.templates import Template, parse_template

SAVE = """
INSERT INTO workflow_templates (id, version, body) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (id, version) DO NOTHING
"""
BODY = "SELECT body FROM workflow_templates WHERE id = $1 AND version = $2"
# Every version of the named templates, newest first: one query for a whole workflow.
VERSIONS = """
SELECT id, version, body FROM workflow_templates WHERE id = ANY($1::text[])
ORDER BY id, version DESC
"""


class TemplateConflict(ValueError):
    """A template version is immutable: the same id and version with another body."""


async def save_template(connection: asyncpg.Connection, raw: dict[str, Any]) -> bool:
    """True when this version is new; TemplateConflict when it exists with another body."""
    template = parse_template(raw)
    status = await connection.execute(SAVE, template.id, template.version, json.dumps(raw))
    if status.endswith(" 1"):
        return True
    stored = await connection.fetchval(BODY, template.id, template.version)
    if json.loads(stored) != json.loads(json.dumps(raw)):
        raise TemplateConflict(
            f"template {template.id} version {template.version} is already registered with "
            "another body; register it as a new version"
        )
    return False


async def load_templates(
    connection: asyncpg.Connection, ids: Iterable[str]
) -> dict[tuple[str, int], Template]:
    """The named templates by (id, version), and each one's latest as (id, 0)."""
    found: dict[tuple[str, int], Template] = {}
    for row in await connection.fetch(VERSIONS, sorted(set(ids))):
        template = parse_template(json.loads(row["body"]))
        found[(template.id, template.version)] = template
        found.setdefault((template.id, 0), template)  # newest first: the first is latest
    return found
