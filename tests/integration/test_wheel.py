"""The wheel, as a team installs it: built from the repository, installed into a fresh
virtualenv, and run from a directory outside the checkout against the real services.

It proves what the editable install cannot: one `stepstream` import root (no stray
top-level packages), and the package data the commands need (schemas, migrations, the
services script and its Kafka pom, the demo's example) travel inside the wheel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stepstream.streams.settings import Settings
from tests.integration.workers import engine_env

REPOSITORY = Path(__file__).resolve().parents[2]
DIAMOND = """\
id: wheel-diamond
version: 1
steps:
  - {id: a, type: noop}
  - {id: b, type: noop, dependsOn: [a]}
  - {id: c, type: noop, dependsOn: [a]}
  - {id: d, type: noop, dependsOn: [b, c]}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh virtualenv holding only the wheel and its deps."""
    root = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools builds in the tree, and a stale build/ there would put
    # modules deleted since into the wheel.
    source = root / "source"
    shutil.copytree(
        REPOSITORY,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", ".*_cache"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root, source],
        check=True,
        cwd=root,
    )
    (wheel,) = root.glob("stepstream-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    subprocess.run([bin_dir / "pip", "install", "-q", wheel], check=True, cwd=root)
    return bin_dir


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory with nothing of the checkout in it."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


@pytest.fixture
def env(
    settings: Settings, topic_prefix: str, schema_database_url: str, tmp_path: Path
) -> dict[str, str]:
    environment = engine_env(
        settings,
        f"{topic_prefix}-wheel-{tmp_path.name}",
        DATABASE_URL=schema_database_url,
        STEPSTREAM_STATE_DIR=str(tmp_path / "state"),
    )
    environment.pop("PYTHONPATH", None)
    environment["PATH"] = os.pathsep.join(
        part for part in environment["PATH"].split(os.pathsep) if ".venv" not in part
    )
    return environment


def stepstream(
    bin_dir: Path, cwd: Path, env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_dir / "stepstream", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def installed_worker(installed: Path, outside: Path, env: dict[str, str]) -> Iterator[None]:
    """`stepstream worker` of the fresh virtualenv, logging to worker.log."""
    with (outside / "worker.log").open("w") as log:
        process = subprocess.Popen(
            [installed / "stepstream", "worker", "--data-dir", outside / "worker"],
            cwd=outside,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=60)


@pytest.fixture
def worker(installed: Path, outside: Path, env: dict[str, str]) -> Iterator[None]:
    with installed_worker(installed, outside, env):
        yield


def test_only_the_stepstream_root_is_installed(installed: Path, outside: Path) -> None:
    probe = (
        "import importlib.util, stepstream\n"
        "stray = [n for n in ('streams', 'agents', 'workflows', 'schemas', 'steps', 'infra',"
        " 'client', 'cli', 'demo', 'console') if importlib.util.find_spec(n)]\n"
        "print(stray, stepstream.WorkflowClient.__module__, stepstream.__version__)"
    )
    result = subprocess.run(
        [installed / "python", "-c", probe], cwd=outside, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "stepstream.client.workflow_client", "0.1.0"]


def test_version_and_plan(installed: Path, outside: Path, env: dict[str, str]) -> None:
    version = stepstream(installed, outside, env, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, "stepstream 0.1.0")
    (outside / "diamond.yaml").write_text(DIAMOND)
    plan = stepstream(installed, outside, env, "plan", "diamond.yaml")
    assert plan.returncode == 0, plan.stderr
    assert "level 2 (in parallel):" in plan.stdout
    assert "d [noop] after b, c" in plan.stdout


def test_register_worker_and_start_wait(
    installed: Path, outside: Path, env: dict[str, str], worker: None
) -> None:
    (outside / "diamond.yaml").write_text(DIAMOND)
    registered = stepstream(installed, outside, env, "register", "diamond.yaml")
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == "registered: wheel-diamond version 1"
    started = stepstream(
        installed,
        outside,
        env,
        *("start", "wheel-diamond", "--tenant", "t", "--user", "u"),
        *("--execution-id", "wheel-1", "--wait", "--timeout", "150"),
    )
    log = (outside / "worker.log").read_text()[-3000:]
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\nworker:\n{log}"
    assert started.stdout.strip().endswith("wheel-1: completed")


def test_services_up_runs_the_packaged_script(
    installed: Path, outside: Path, env: dict[str, str]
) -> None:
    """The services already run; `up` finds them through the packaged script and reuses
    them, printing the environment that points at them."""
    result = stepstream(installed, outside, env, "services", "up")
    assert result.returncode == 0, result.stderr
    printed = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert printed["KAFKA_BOOTSTRAP_SERVERS"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert "reusing" in result.stderr


def test_run_the_demo_from_the_packaged_example(
    installed: Path, outside: Path, env: dict[str, str]
) -> None:
    result = stepstream(installed, outside, env, "run", timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "completed" in result.stdout.splitlines()[-1]
    # The wall time is the execution's, from its first release to its last step's end
    # (a skipped step, which has no times, once made it an epoch date).
    wall = re.search(r"wall time (\d+) ms", result.stdout)
    assert wall is not None and 0 < int(wall.group(1)) < 300_000, result.stdout[-3000:]


def test_an_installed_step_package_runs_its_steps(
    installed: Path, outside: Path, env: dict[str, str], schema_database_url: str
) -> None:
    """`pip install` of a step package is all a worker needs: its entry point is found,
    `register` accepts its step type, and the step runs with its resource."""
    package = REPOSITORY / "examples" / "step-package"
    subprocess.run([installed / "pip", "install", "-q", package], check=True, cwd=outside)
    shutil.copy(package / "greet.yaml", outside / "greet.yaml")
    registered = stepstream(installed, outside, env, "register", "greet.yaml")
    assert registered.returncode == 0, registered.stderr
    with installed_worker(installed, outside, env):
        started = stepstream(
            installed,
            outside,
            env,
            *("start", "greet", "--tenant", "t", "--user", "u", "--input", '{"name": "Ada"}'),
            *("--execution-id", "greet-1", "--wait", "--timeout", "150", "-o", "json"),
        )
    worker_log = (outside / "worker.log").read_text()[-3000:]
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\n{worker_log}"
    outputs = json.loads(json.loads(started.stdout)["outputs_json"])
    assert outputs["greet"] == {"greeting": "Welcome, Ada!"}

    async def recorded() -> list[str]:
        connection = await asyncpg.connect(schema_database_url)
        try:
            rows = await connection.fetch("SELECT greeting FROM greetings")
            return [row["greeting"] for row in rows]
        finally:
            await connection.close()

    assert asyncio.run(recorded()) == ["Welcome, Ada!"]

    async def registered_body() -> dict[str, Any]:
        connection = await asyncpg.connect(schema_database_url)
        try:
            body = await connection.fetchval(
                "SELECT body FROM workflow_definitions WHERE id = 'greet' AND version = 1"
            )
            return dict(json.loads(body))
        finally:
            await connection.close()

    greet, done = asyncio.run(registered_body())["steps"]
    assert (greet["timeoutMs"], greet["retry"]["maxAttempts"]) == (10_000, 3)  # GREET's own
    assert "timeoutMs" not in done and "retry" not in done  # noop declares none
