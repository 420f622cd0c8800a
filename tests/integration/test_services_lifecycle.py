"""`stepstream services up|status|down` on a second, private set of services.

The suite's own services keep running; this test starts another Kafka, PostgreSQL and
Redis on other ports and in a temporary state directory, then proves that `up` is
idempotent and that `down` leaves none of the processes `up` started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "local" / "services.sh"


def services(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), action],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def private_env() -> Iterator[dict[str, str]]:
    # Not under pytest's tmp_path: PostgreSQL runs as its own user and must reach the dir.
    state = Path(tempfile.mkdtemp(prefix="stepstream-lifecycle-", dir="/var/tmp"))
    state.chmod(0o755)
    yield {
        **os.environ,
        "PYTHON": sys.executable,
        "STEPSTREAM_STATE_DIR": str(state),
        "STEPSTREAM_KAFKA_PORT": "29092",
        "STEPSTREAM_KAFKA_CONTROLLER_PORT": "29093",
        "STEPSTREAM_PG_PORT": "25432",
        "STEPSTREAM_REDIS_PORT": "26379",
        "STEPSTREAM_KAFKA_HEAP": "384m",
    }
    shutil.rmtree(state, ignore_errors=True)


def test_up_is_idempotent_and_down_stops_everything_it_started(
    private_env: dict[str, str],
) -> None:
    run_dir = Path(private_env["STEPSTREAM_STATE_DIR"]) / "run"
    try:
        first = services("up", private_env)
        assert first.returncode == 0, first.stderr
        assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092" in first.stdout
        assert (
            "DATABASE_URL=postgresql://stepstream:stepstream@127.0.0.1:25432/stepstream"
            in first.stdout
        )
        assert "REDIS_URL=redis://127.0.0.1:26379/0" in first.stdout
        pids = {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid")}
        assert set(pids) == {"kafka", "postgres", "redis"}
        assert all(pid_alive(pid) for pid in pids.values())

        second = services("up", private_env)
        assert second.returncode == 0, second.stderr
        for name in pids:
            assert f"{name}: reusing pid {pids[name]}" in second.stderr
        assert {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid")} == pids

        status = services("status", private_env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("answers") == 3
    finally:
        down = services("down", private_env)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not list(run_dir.glob("*.pid"))
    after = services("status", private_env)
    assert after.returncode != 0
    assert after.stdout.count("does not answer") == 3
