"""Retry timing. Jitter is derived from the step's identity, not a random source, so a
replay of the same events schedules the same retries (the reducer stays deterministic)."""

from __future__ import annotations

import hashlib

from stepstream.workflows.definition import RetryPolicy


def unit_jitter(execution_id: str, step_id: str, attempt: int) -> float:
    """A stable pseudo-random number in [0, 1) for this attempt of this step."""
    digest = hashlib.blake2b(f"{execution_id}\x00{step_id}\x00{attempt}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def backoff_ms(policy: RetryPolicy, execution_id: str, step_id: str, failed_attempt: int) -> int:
    """How long to wait after `failed_attempt` (1-based) before the next attempt."""
    base = min(
        float(policy.max_backoff_ms),
        policy.initial_backoff_ms * policy.multiplier ** (failed_attempt - 1),
    )
    spread = (
        1 - policy.jitter + 2 * policy.jitter * unit_jitter(execution_id, step_id, failed_attempt)
    )
    return int(min(float(policy.max_backoff_ms), base * spread))
