"""The command line as a user meets it, against the real services: expected failures are
one line with a documented exit code (never a traceback), `--timeout` bounds the whole
command, nothing is published or created before it is known to be wanted, and the
operators' commands (`list`, `describe`, `status`, `-o json`, `dead-letters --redrive`)
answer from the current state."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stepstream.client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    NOOP_DIAMOND,
    cli,
    definition,
    engine_env,
    prepare,
    read_topic,
    running_worker,
)

FAILS = definition(
    {
        "id": "always-fails",
        "version": 1,
        "steps": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "fail", "dependsOn": ["a"], "config": {"permanent": True}},
        ],
    }
)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed, checked to be all it printed."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def engine(
    settings: Settings,
    run_token: str,
    schema_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A worker on a prefix of its own, writing to this run's PostgreSQL schema."""
    env = engine_env(settings, f"test-{run_token}-cli", DATABASE_URL=schema_database_url)
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, NOOP_DIAMOND, FAILS))
    with running_worker(engine, env, "cli-w1", tmp_path_factory.mktemp("cli")):
        yield engine, env


@pytest.fixture(scope="module")
def idle(settings: Settings, run_token: str) -> tuple[Settings, dict[str, str]]:
    """Topics and definitions, and no worker."""
    env = engine_env(settings, f"test-{run_token}-idle")
    idle = Settings.from_env(env)
    asyncio.run(prepare(idle, NOOP_DIAMOND))
    return idle, env


@pytest.mark.parametrize(
    "args",
    [
        ("start", "noop-diamond", "--tenant", "t", "--user", "u"),
        ("register", "DEFINITION"),
        ("dead-letters",),
        ("topics", "create"),
        ("replay", "some-id", "retry"),
    ],
)
def test_kafka_unreachable_is_one_line_naming_it(
    settings: Settings, topic_prefix: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "d.yaml").write_text("id: d\nversion: 1\nsteps: [{id: a, type: noop}]\n")
    args = tuple(str(tmp_path / "d.yaml") if a == "DEFINITION" else a for a in args)
    env = engine_env(settings, f"{topic_prefix}-offline", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    result = cli(env, *args)
    assert result.returncode == 3
    line = one_line(result)
    assert line.startswith("stepstream: cannot use Kafka at 127.0.0.1:1: ")
    assert "KAFKA_BOOTSTRAP_SERVERS" in line


@pytest.mark.parametrize("args", [("db", "migrate"), ("list",), ("describe", "x"), ("status", "x")])
def test_postgres_unreachable_is_one_line_without_the_password(
    settings: Settings, topic_prefix: str, args: tuple[str, ...]
) -> None:
    url = "postgresql://stepstream:hunter2@127.0.0.1:1/stepstream"
    result = cli(engine_env(settings, f"{topic_prefix}-offline", DATABASE_URL=url), *args)
    assert result.returncode == 3
    line = one_line(result)
    assert "cannot use PostgreSQL at postgresql://stepstream:***@127.0.0.1:1/stepstream" in line
    assert "DATABASE_URL" in line and "hunter2" not in line


def test_a_step_package_that_cannot_load_stops_the_worker(
    settings: Settings, topic_prefix: str
) -> None:
    result = cli(
        engine_env(settings, f"{topic_prefix}-offline"), "worker", "--steps", "no_such_steps_module"
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "step package 'no_such_steps_module' could not be imported" in line


def test_redis_unreachable_for_stats(settings: Settings, topic_prefix: str) -> None:
    result = cli(
        engine_env(settings, f"{topic_prefix}-offline", REDIS_URL="redis://127.0.0.1:1/0"), "stats"
    )
    assert result.returncode == 3
    assert "cannot use Redis at redis://127.0.0.1:1/0" in one_line(result)


def test_smoke_reports_every_service_as_json(settings: Settings, topic_prefix: str) -> None:
    result = cli(engine_env(settings, f"{topic_prefix}-offline"), "smoke", "-o", "json")
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    assert [(c["service"], c["ok"]) for c in checks] == [
        ("kafka", True),
        ("postgres", True),
        ("redis", True),
    ]


def test_smoke_names_the_service_that_is_down(settings: Settings, topic_prefix: str) -> None:
    env = engine_env(settings, f"{topic_prefix}-offline", REDIS_URL="redis://127.0.0.1:1/0")
    result = cli(env, "smoke")
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["kafka", "ok"],
        ["postgres", "ok"],
        ["redis", "FAILED"],
    ]


def test_start_wait_timeout_exits_124(idle: tuple[Settings, dict[str, str]]) -> None:
    _, env = idle
    args = ("start", "noop-diamond", "--tenant", "t", "--user", "u")
    result = cli(env, *args, "--wait", "--timeout", "2")
    assert result.returncode == 124
    assert "did not end" in result.stderr or "timed out" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_on_a_prefix_without_topics_creates_none(settings: Settings, run_token: str) -> None:
    prefix = f"test-{run_token}-nowhere"
    env = engine_env(settings, prefix)
    args = ("start", "noop-diamond", "--tenant", "t", "--user", "u", "--wait")
    result = cli(env, *args, "--timeout", "8")
    assert result.returncode == 3
    assert "do not exist: start a worker" in one_line(result)

    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            return [t for t in await admin.list_topics() if t.startswith(prefix)]
        finally:
            await admin.close()

    assert asyncio.run(topics()) == []


def test_unknown_workflow_is_refused_before_publishing(
    idle: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = idle
    result = cli(env, "start", "no-such-workflow", "--tenant", "t", "--user", "u")
    assert result.returncode == 2
    assert "workflow no-such-workflow is not registered" in one_line(result)
    versioned = cli(env, "start", "noop-diamond", "--version", "7", "--tenant", "t", "--user", "u")
    assert versioned.returncode == 2
    assert "noop-diamond version 7 is not registered" in one_line(versioned)
    names = TopicNames.for_prefix(settings.topic_prefix)
    published = asyncio.run(read_topic(settings, names.workflow_start))
    assert [e for e in published if e.record.get("workflow_id") != "noop-diamond"] == []


@pytest.mark.parametrize("bad", ["[1, 2]", "5", "not json", '"text"'])
def test_input_must_be_a_json_object(idle: tuple[Settings, dict[str, str]], bad: str) -> None:
    _, env = idle
    result = cli(env, "start", "noop-diamond", "--tenant", "t", "--user", "u", "--input", bad)
    assert result.returncode == 2
    assert "--input" in one_line(result)


def test_start_wait_json_and_exit_codes(engine: tuple[Settings, dict[str, str]]) -> None:
    _, env = engine
    base = ("--tenant", "cli-json", "--user", "u", "--wait", "--timeout", "60", "-o", "json")
    done = cli(env, "start", "noop-diamond", "--execution-id", "cli-json-ok", *base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    failed = cli(env, "start", "always-fails", "--execution-id", "cli-json-failed", *base)
    assert failed.returncode == 1, failed.stderr
    answer = json.loads(failed.stdout)
    assert (answer["status"], answer["failed_step_id"]) == ("failed", "b")


def test_list_describe_and_status(engine: tuple[Settings, dict[str, str]]) -> None:
    _, env = engine
    tenant = ("--tenant", "cli-list", "--user", "u", "--wait", "--timeout", "60")
    for number in range(3):
        started = cli(env, "start", "noop-diamond", "--execution-id", f"cli-ok-{number}", *tenant)
        assert started.returncode == 0, started.stderr
    assert cli(env, "start", "always-fails", "--execution-id", "cli-bad", *tenant).returncode == 1

    def listed(*args: str, expect: int) -> dict[str, Any]:
        """The page, once the persister has recorded how all `expect` executions ended."""

        def settled(result: subprocess.CompletedProcess[str]) -> bool:
            if result.returncode != 0:
                return False
            shown = json.loads(result.stdout)["executions"]
            return len(shown) == expect and all(e["status"] != "running" for e in shown)

        result = cli(env, "list", "--tenant", "cli-list", "-o", "json", *args, until=settled)
        assert settled(result), result.stdout + result.stderr
        page: dict[str, Any] = json.loads(result.stdout)
        return page

    everything = listed(expect=4)
    ids = [e["execution_id"] for e in everything["executions"]]
    assert sorted(ids) == ["cli-bad", "cli-ok-0", "cli-ok-1", "cli-ok-2"]
    first = listed("--limit", "2", expect=2)
    second = listed("--page-token", first["next_page_token"], "--limit", "2", expect=2)
    paged = [e["execution_id"] for e in [*first["executions"], *second["executions"]]]
    assert paged == ids and second["next_page_token"] is None
    failed = listed("--status", "failed", expect=1)
    assert [e["execution_id"] for e in failed["executions"]] == ["cli-bad"]

    described = cli(env, "describe", "cli-bad", "-o", "json")
    assert described.returncode == 0, described.stderr
    record = json.loads(described.stdout)
    assert (record["status"], record["failed_step_id"]) == ("failed", "b")
    attempts = {(s["step_id"], s["status"]) for s in record["steps"]}
    assert attempts == {("a", "completed"), ("b", "failed")}
    assert next(s["error"] for s in record["steps"] if s["step_id"] == "b") == (
        "PermanentStepError: b failed on purpose"
    )

    shown = cli(env, "describe", "cli-ok-0")
    assert shown.returncode == 0, shown.stderr
    assert "status:           completed" in shown.stdout
    assert '"d": {"step": "d"}' in shown.stdout  # the outputs, by step

    status = cli(env, "status", "cli-ok-1")
    assert status.returncode == 0, status.stderr
    rows = [line for line in status.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["a", "b", "c", "d"]
    assert all(row.split("│")[2].strip() == "completed" for row in rows)


def test_a_start_rejected_later_shows_its_reason(
    engine: tuple[Settings, dict[str, str]], schema_database_url: str
) -> None:
    settings, env = engine

    async def start_unregistered_version() -> None:
        async with WorkflowClient(settings, follow_outcomes=True) as client:
            await client.start_workflow("noop-diamond", {}, "t", "u", "cli-rejected", 9)
            outcome = await client.wait_for("cli-rejected", 30)
            assert outcome.status == "rejected"

    asyncio.run(start_unregistered_version())
    result = cli(env, "status", "cli-rejected", until=lambda r: "rejected" in r.stdout)
    assert result.returncode == 0, result.stderr
    assert "unknown_workflow" in result.stdout

    async def row() -> asyncpg.Record:
        connection = await asyncpg.connect(schema_database_url)
        try:
            return await connection.fetchrow(
                "SELECT status, error FROM workflow_executions WHERE execution_id = $1",
                "cli-rejected",
            )
        finally:
            await connection.close()

    stored = asyncio.run(row())
    assert stored["status"] == "rejected" and stored["error"].startswith("unknown_workflow: ")


def test_the_client_answers_for_an_execution_that_already_ended(
    engine: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = engine
    assert cli(env, "start", "noop-diamond", "--execution-id", "cli-early", "--tenant", "t",
               "--user", "u", "--wait", "--timeout", "60").returncode == 0  # fmt: skip

    async def later() -> tuple[str, list[str]]:
        async with WorkflowClient(settings) as client:  # opened after the end
            record = await client.result("cli-early", timeout=30)
            return record.status, sorted(step.step_id for step in record.steps)

    assert asyncio.run(later()) == ("completed", ["a", "b", "c", "d"])


def test_redrive_sends_a_letter_once(engine: tuple[Settings, dict[str, str]]) -> None:
    settings, env = engine
    names = TopicNames.for_prefix(settings.topic_prefix)

    async def publish_garbage() -> None:
        async with WorkflowClient(settings, follow_outcomes=False) as client:
            await client.send_raw(names.executions, b"\x00 not an event", b"cli-garbage")

    asyncio.run(publish_garbage())
    listing = cli(env, "dead-letters", "--source-topic", names.executions,
                  until=lambda r: "cli-garbage" in r.stdout or "not an event" in r.stdout
                  or r.stdout.count(names.executions) >= 1)  # fmt: skip
    assert names.executions in listing.stdout, listing.stdout + listing.stderr
    first = cli(env, "dead-letters", "--source-topic", names.executions, "--redrive")
    assert first.returncode == 0 and "re-driven 1 dead letter(s)" in first.stdout, first.stdout
    second = cli(env, "dead-letters", "--source-topic", names.executions, "--redrive")
    assert second.returncode == 0, second.stderr
    assert "skipped 1 re-driven before" in second.stdout, second.stdout
