"""On a 3-node KRaft cluster (tests/cluster.py): every topic the engine or faust declares
is replicated three times with min.insync.replicas=2, and the CLI keeps working while a
broker is down, including in the seconds before the cluster has fenced it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stepstream.infra.operators import Role
from stepstream.streams.settings import Settings
from stepstream.streams.topic_plan import plan_topics
from stepstream.streams.topics import TopicNames
from tests.cluster import KafkaCluster
from tests.integration.console_helpers import User, Visitor, add_users, console_process
from tests.integration.workers import (
    WorkerProcess,
    cli,
    engine_env,
    prepare,
    running_worker,
    wait_until_ready,
)


def cluster_env(settings: Settings, kafka_cluster: KafkaCluster, prefix: str) -> dict[str, str]:
    return engine_env(
        settings,
        prefix,
        KAFKA_BOOTSTRAP_SERVERS=kafka_cluster.bootstrap,
        STEPSTREAM_REPLICATION_FACTOR="3",
    )


async def replication(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, str]]:
    """Each topic's fewest replicas of a partition and its min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None})
            for t in topics
        ]
        [response] = await admin.describe_configs(resources)
    finally:
        await admin.close()
    isr = {name: dict(e[:2] for e in entries) for _, _, _, name, entries in response.resources}
    return {
        t["topic"]: (
            min(len(p["replicas"]) for p in t["partitions"]),
            isr[t["topic"]]["min.insync.replicas"],
        )
        for t in described
    }


def test_every_topic_is_replicated_with_two_in_sync_and_topics_check_agrees(
    settings: Settings, kafka_cluster: KafkaCluster, run_token: str, tmp_path: Path
) -> None:
    env = cluster_env(settings, kafka_cluster, f"test-{run_token}-cluster")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine))
    with running_worker(engine, env, "cluster-w1", tmp_path):
        plan = [spec.name for spec in plan_topics(engine)]
        found = asyncio.run(replication(kafka_cluster.bootstrap, plan))
        assert set(found) == set(plan)  # faust's changelogs and leader topic included
        assert {name: value for name, value in found.items() if value != (3, "2")} == {}
        checked = cli(env, "topics", "check", "-o", "json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout) == []


def test_topics_check_names_a_topic_with_one_in_sync_replica_and_its_fix(
    settings: Settings, kafka_cluster: KafkaCluster, run_token: str
) -> None:
    env = cluster_env(settings, kafka_cluster, f"test-{run_token}-weak")
    asyncio.run(_create_weak_topic(kafka_cluster.bootstrap, f"test-{run_token}-weak.executions"))
    checked = cli(env, "topics", "check")
    assert checked.returncode == 1
    weak = f"test-{run_token}-weak.executions:"
    line = next(text for text in checked.stdout.splitlines() if text.startswith(weak))
    assert "min.insync.replicas=1 with 3 replicas" in line
    assert "--add-config min.insync.replicas=2" in line


async def _create_weak_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 4, 3, topic_configs={"min.insync.replicas": "1"})]
        )
    finally:
        await admin.close()


async def signed_in_pages(base: str, name: str, pages: tuple[str, ...]) -> list[int]:
    async with aiohttp.ClientSession() as http:
        visitor = Visitor(base, http)
        assert await visitor.sign_in(name) == 303
        return [(await visitor.get(page))[0] for page in pages]


def test_the_command_line_and_the_console_work_while_a_broker_is_down(
    settings: Settings, kafka_cluster: KafkaCluster, run_token: str, tmp_path: Path
) -> None:
    env = cluster_env(settings, kafka_cluster, f"test-{run_token}-lost")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine))
    admin = User(f"cluster-admin-{run_token}", Role.ADMIN, None)
    add_users(engine, [admin])
    names = TopicNames.for_prefix(engine.topic_prefix)
    with (
        running_worker(engine, env, "cluster-w2", tmp_path),
        console_process(env, tmp_path / "console.log") as console,
    ):
        victim = asyncio.run(kafka_cluster.busiest([names.workflow_start, names.executions]))
        kafka_cluster.kill(victim)
        # A worker starting now declares its topics while the dead node is still listed.
        joining = WorkerProcess("cluster-w3", env, tmp_path)
        try:
            # At once: the dead node is still in every client's metadata, not yet fenced.
            start = ("start", "probe", "--tenant", "t", "--user", "u", "--wait", "--timeout", "90")
            for attempt in range(3):
                started = cli(env, *start, timeout=120)
                assert started.returncode == 0, f"attempt {attempt}: {started.stderr}"
            execution_id = json.loads(cli(env, *start, "-o", "json").stdout)["execution_id"]
            status = cli(env, "status", execution_id, "-o", "json")
            assert status.returncode == 0, status.stderr
            listed = cli(env, "list", "--workflow", "probe", "-o", "json")
            assert listed.returncode == 0, listed.stderr
            pages = ("/executions", f"/executions/{execution_id}", "/figures", "/analytics")
            assert asyncio.run(signed_in_pages(console, admin.name, pages)) == [200] * 4
            asyncio.run(wait_until_ready(engine, [joining], 120))
            assert joining.process.poll() is None, joining.log_tail()
        finally:
            joining.stop()
            kafka_cluster.up()  # the killed node again, for the tests after this one
