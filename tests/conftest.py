"""Fixtures shared by every test: settings and a per-run isolation token.

Service fixtures live in tests/services.py. They connect to the real Kafka, PostgreSQL
and Redis and fail (never skip) when a service does not answer.
"""

from __future__ import annotations

import uuid

import pytest

from stepstream.streams.settings import Settings

pytest_plugins = ["tests.services"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def run_token() -> str:
    """Unique per test run, so topics, schemas and keys of parallel runs never collide."""
    return uuid.uuid4().hex[:10]
