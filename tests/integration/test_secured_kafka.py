"""On a secured broker (tests/secured.py: TLS, SCRAM, mutual TLS, the ACL authorizer): a
worker holding exactly the documented worker ACLs runs workflows that a producer holding
only the producer ACLs starts with the CLI; the producer cannot read step outputs; a
wrong password and an untrusted certificate are one clear line, at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stepstream.streams.acls import acls_for
from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import cli, engine_env, prepare, running_worker
from tests.secured import PASSWORDS, SecuredKafka, start_secured


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    kafka = start_secured(tmp_path_factory.mktemp("secured-kafka"))
    try:
        yield kafka
    finally:
        kafka.down()


@pytest.mark.parametrize("listener", ["sasl", "mtls"])
def test_a_worker_and_a_producer_with_least_privileges_run_a_workflow(
    listener: str, secured: SecuredKafka, settings: Settings, run_token: str, tmp_path: Path
) -> None:
    prefix = f"test-{run_token}-{listener}"
    as_worker = secured.sasl("worker") if listener == "sasl" else secured.mtls("worker")
    as_producer = secured.sasl("producer") if listener == "sasl" else secured.mtls("producer")
    principal = {"sasl": "User:{}", "mtls": "User:CN={}"}[listener]
    asyncio.run(secured.grant(principal.format("worker"), acls_for("worker", prefix)))
    asyncio.run(secured.grant(principal.format("producer"), acls_for("producer", prefix)))
    worker_env = engine_env(settings, prefix, **as_worker)
    engine = Settings.from_env(worker_env)
    asyncio.run(prepare(engine))  # topics and definitions, with the worker's rights
    with running_worker(engine, worker_env, f"secured-{listener}", tmp_path):
        producer_env = engine_env(settings, prefix, **as_producer)
        started = cli(
            producer_env, "start", "probe", "--tenant", "t", "--user", "u", "--wait", "-o", "json"
        )
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["status"] == "completed"
        step_reports = TopicNames.for_prefix(prefix).step_completed
        as_worker_access = KafkaAccess.from_settings(engine)
        assert asyncio.run(read_some(as_worker_access, step_reports)) == (True, True)
        as_producer_access = KafkaAccess.from_settings(Settings.from_env(producer_env))
        assert asyncio.run(read_some(as_producer_access, step_reports)) == (False, False)
    assert "worker-secret" not in (tmp_path / f"secured-{listener}.log").read_text()


async def read_some(access: KafkaAccess, topic: str) -> tuple[bool, bool]:
    """Whether the topic is visible to this client, and whether it read any record of it
    (the probe's steps reported there)."""
    consumer = AIOKafkaConsumer(**access.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        visible = topic in await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        batches = await consumer.getmany(timeout_ms=5_000)
        return visible, any(batches.values())
    finally:
        await consumer.stop()


def test_a_wrong_password_is_one_line_naming_kafka_and_the_cause(
    secured: SecuredKafka, settings: Settings, run_token: str
) -> None:
    env = engine_env(settings, f"test-{run_token}-denied", **secured.sasl("producer", "wrong"))
    began = time.monotonic()
    result = cli(env, "start", "probe", "--tenant", "t", "--user", "u")
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"stepstream: cannot use Kafka at {secured.sasl_bootstrap}: ")
    assert "authentication failed" in line
    assert "wrong" not in line and PASSWORDS["producer"] not in line
    assert time.monotonic() - began < 30  # no retry loop


def test_an_untrusted_certificate_is_one_line_naming_kafka_and_the_cause(
    secured: SecuredKafka, settings: Settings, run_token: str
) -> None:
    stranger = secured.state / "stranger" / "stranger.pem"
    access = {**secured.sasl("producer"), "KAFKA_SSL_CA_FILE": str(stranger)}
    env = engine_env(settings, f"test-{run_token}-untrusted", **access)
    result = cli(env, "start", "probe", "--tenant", "t", "--user", "u")
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert "certificate is not trusted" in line, line
    worker = cli(env, "worker", "--name", "untrusted", timeout=60)
    assert worker.returncode == 3
    assert "certificate is not trusted" in worker.stderr.strip().splitlines()[-1]
