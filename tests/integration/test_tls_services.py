"""PostgreSQL and Redis over TLS only (started by the project's script with
STEPSTREAM_SERVICES_TLS_DIR, certificates from a throwaway CA): the URLs the script prints
verify the server; the CLI, the smoke job and a worker's persister use them; a CA that
did not sign the server's certificate is one clear line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from stepstream.streams.settings import Settings
from tests.cluster import SCRIPT
from tests.integration.workers import cli, engine_env, prepare, running_worker
from tests.secured import make_authority, make_certificate


class TlsServices:
    def __init__(self, state: Path) -> None:
        tls = state / "tls"
        make_authority(tls, "ca")
        make_certificate(tls, "ca", "server")
        (tls / "server.crt").chmod(0o644)
        make_authority(state / "stranger", "stranger")
        self.state = state
        self.env = {
            **os.environ,
            "PYTHON": sys.executable,
            "STEPSTREAM_STATE_DIR": str(state),
            "STEPSTREAM_PG_PORT": "24432",
            "STEPSTREAM_REDIS_PORT": "24379",
            "STEPSTREAM_SERVICES_TLS_DIR": str(tls),
        }

    def script(self, action: str) -> dict[str, str]:
        done = subprocess.run(
            ["bash", str(SCRIPT), action, "postgres", "redis"],
            env=self.env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def tls_services() -> Iterator[tuple[TlsServices, dict[str, str]]]:
    # Not under pytest's tmp_path: PostgreSQL runs as its own user and must reach the dir.
    state = Path(tempfile.mkdtemp(prefix="stepstream-tls-", dir="/var/tmp"))
    state.chmod(0o755)
    services = TlsServices(state)
    try:
        printed = services.script("up")
        urls = {key: printed[key] for key in ("DATABASE_URL", "REDIS_URL")}
        migrate = cli({**os.environ, **urls}, "db", "migrate")
        assert migrate.returncode == 0, migrate.stderr
        yield services, urls
    finally:
        services.script("down")
        shutil.rmtree(state, ignore_errors=True)


def test_the_printed_urls_verify_the_server_and_the_session_is_encrypted(
    tls_services: tuple[TlsServices, dict[str, str]],
) -> None:
    _, urls = tls_services
    assert "sslmode=verify-full" in urls["DATABASE_URL"]
    assert urls["REDIS_URL"].startswith("rediss://")

    async def encrypted() -> bool:
        connection = await asyncpg.connect(urls["DATABASE_URL"])
        try:
            sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            return bool(await connection.fetchval(sql))
        finally:
            await connection.close()

    assert asyncio.run(encrypted())
    smoke = cli({**os.environ, **urls}, "smoke", "-o", "json")
    checks = {check["service"]: check for check in json.loads(smoke.stdout)}
    assert checks["postgres"]["ok"] and checks["redis"]["ok"], smoke.stdout


def test_a_worker_records_executions_over_tls(
    tls_services: tuple[TlsServices, dict[str, str]],
    settings: Settings,
    run_token: str,
    tmp_path: Path,
) -> None:
    _, urls = tls_services
    env = engine_env(settings, f"test-{run_token}-tls", **urls)
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine))
    with running_worker(engine, env, "tls-w1", tmp_path):
        started = cli(env, "start", "probe", "--tenant", "t", "--user", "u", "--wait", "-o", "json")
        assert started.returncode == 0, started.stderr
        execution_id = json.loads(started.stdout)["execution_id"]
        # The persister wrote it to PostgreSQL over TLS; `status` reads it back the same way.
        status = cli(
            env,
            "status",
            execution_id,
            "-o",
            "json",
            until=lambda r: r.returncode == 0 and '"completed"' in r.stdout,
        )
        assert json.loads(status.stdout)["status"] == "completed", status.stdout + status.stderr


def test_an_untrusted_server_certificate_is_one_line(
    tls_services: tuple[TlsServices, dict[str, str]],
) -> None:
    services, urls = tls_services
    stranger = str(services.state / "stranger" / "stranger.pem")
    tls_ca = str(services.state / "tls" / "ca.pem")
    untrusted = {key: value.replace(tls_ca, stranger) for key, value in urls.items()}
    result = cli({**os.environ, **untrusted}, "list")
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("stepstream: cannot use PostgreSQL at "), line
    assert "certificate verify failed" in line, line
    smoke = cli({**os.environ, **untrusted}, "smoke", "-o", "json")
    checks = {check["service"]: check for check in json.loads(smoke.stdout)}
    assert not checks["redis"]["ok"] and "certificate verify failed" in checks["redis"]["detail"]
