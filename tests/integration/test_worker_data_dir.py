"""`stepstream worker --data-dir` with parents that do not exist yet: they are created
(seen before: FileNotFoundError at start-up)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stepstream.streams.settings import Settings
from tests.integration.workers import WorkerProcess, engine_env, prepare, wait_until_ready


def test_a_worker_creates_its_data_dir_with_missing_parents(
    settings: Settings,
    kafka_bootstrap: str,
    schema_database_url: str,
    run_token: str,
    tmp_path: Path,
) -> None:
    env = engine_env(settings, f"test-{run_token}-datadir", DATABASE_URL=schema_database_url)
    engine = Settings.from_env(env)
    data_dir = tmp_path / "not" / "there" / "yet"
    asyncio.run(prepare(engine))
    # The last --data-dir wins over the one WorkerProcess passes.
    worker = WorkerProcess("datadir-w1", env, tmp_path, extra_args=("--data-dir", str(data_dir)))
    try:
        asyncio.run(wait_until_ready(engine, [worker], 120))  # raises if the worker exited
        assert data_dir.is_dir()
        assert any(data_dir.iterdir()), "the worker keeps its table stores there"
    finally:
        worker.stop()
