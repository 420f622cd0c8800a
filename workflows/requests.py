"""What a start request must hold before the engine takes it. The intake applies these
checks to every request; the client applies them before it publishes one."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ID_LENGTH = 128
# Ids appear in Kafka keys, idempotency keys ("<execution>/<step>/<attempt>", so no '/'),
# PostgreSQL rows and URLs: a conservative set that needs no escaping anywhere.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # invalid_request or input_too_large, as WorkflowRejected carries it
    reason: str
    limit: str | None = None


def id_problem(field: str, value: str) -> str | None:
    if not value:
        return f"{field} is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{field} is {len(value)} characters long; at most {MAX_ID_LENGTH}"
    if not _SAFE_ID.fullmatch(value):
        return (
            f"{field} {value[:40]!r} may hold only letters, digits and '.', '_', ':', '@',"
            " '-', and must start with a letter or digit"
        )
    return None


def check_start(
    execution_id: str,
    workflow_id: str,
    tenant_id: str,
    user_id: str,
    input_json: str,
    max_input_bytes: int,
) -> Refusal | None:
    """The first reason to refuse the start, or None when it may go ahead."""
    for field, value in (
        ("execution_id", execution_id),
        ("workflow_id", workflow_id),
        ("tenant_id", tenant_id),
        ("user_id", user_id),
    ):
        problem = id_problem(field, value)
        if problem is not None:
            return Refusal("invalid_request", problem)
    size = len(input_json.encode())
    if size > max_input_bytes:
        return Refusal(
            "input_too_large",
            f"input is {size} bytes; the limit is {max_input_bytes} (WORKFLOW_MAX_INPUT_BYTES)",
            limit=f"{max_input_bytes} bytes",
        )
    return None
