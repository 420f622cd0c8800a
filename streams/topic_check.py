"""The cluster's topics against the plan (streams.topic_plan): what differs, and the fix.

`stepstream topics check` prints every finding; a worker's start logs the durability ones
(a replicated deployment whose topics accept writes held by one replica)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.reaching import with_admin
from stepstream.streams.topic_plan import TopicSpec

CHECKED_CONFIGS = ("min.insync.replicas", "cleanup.policy")
Configs = dict[str, dict[str, str]]  # each topic's checked settings


@dataclass(frozen=True)
class Finding:
    topic: str
    problem: str
    fix: str
    durability: bool = False  # fewer replicas, or fewer in sync, than planned

    def line(self) -> str:
        return f"{self.topic}: {self.problem}; fix: {self.fix}"


async def check_topics(
    kafka: KafkaAccess, plan: Sequence[TopicSpec], only_durability: bool = False
) -> list[Finding]:
    async def look(admin: AIOKafkaAdminClient) -> tuple[set[str], list[Any], Configs]:
        existing = set(await admin.list_topics())
        present = [spec.name for spec in plan if spec.name in existing]
        described = await admin.describe_topics(present) if present else []
        return existing, described, await _configs(admin, present)

    existing, described, configs = await with_admin(kafka, look)
    replicas = {
        topic["topic"]: (
            len(topic["partitions"]),
            min(len(p["replicas"]) for p in topic["partitions"]),
        )
        for topic in described
        if topic["partitions"]
    }
    findings = []
    for spec in plan:
        if spec.name not in existing:
            if not only_durability:
                findings.append(Finding(spec.name, "missing", _create(kafka, spec)))
            continue
        partitions, factor = replicas.get(spec.name, (0, 0))
        findings += _differences(kafka, spec, partitions, factor, configs.get(spec.name, {}))
    if only_durability:
        findings = [f for f in findings if f.durability]
    return findings


def _differences(
    kafka: KafkaAccess, spec: TopicSpec, partitions: int, factor: int, configs: dict[str, str]
) -> list[Finding]:
    found = []
    if partitions != spec.partitions:
        found.append(
            Finding(
                spec.name,
                f"{partitions} partitions, the plan has {spec.partitions}",
                "every execution-keyed topic needs the same count: recreate the topics "
                "(events of one execution must meet in one partition)",
            )
        )
    if factor < spec.replication_factor:
        found.append(
            Finding(
                spec.name,
                f"{factor} replicas, the plan has {spec.replication_factor}",
                f"kafka-reassign-partitions.sh --bootstrap-server {kafka.bootstrap_servers} "
                "with a plan giving each partition "
                f"{spec.replication_factor} replicas",
                durability=True,
            )
        )
    wanted_isr = int(spec.configs.get("min.insync.replicas", "1"))
    isr = int(configs.get("min.insync.replicas", "1"))
    if isr < wanted_isr:
        found.append(
            Finding(
                spec.name,
                f"min.insync.replicas={isr} with {factor} replicas: an event is acknowledged "
                "when one replica holds it",
                _alter(kafka, spec.name, f"min.insync.replicas={wanted_isr}"),
                durability=True,
            )
        )
    policy = spec.configs.get("cleanup.policy", "delete")
    if configs.get("cleanup.policy", policy) != policy:
        found.append(
            Finding(
                spec.name,
                f"cleanup.policy={configs['cleanup.policy']}, the plan has {policy}",
                _alter(kafka, spec.name, f"cleanup.policy={policy}"),
            )
        )
    return found


def _alter(kafka: KafkaAccess, topic: str, config: str) -> str:
    return (
        f"kafka-configs.sh --bootstrap-server {kafka.bootstrap_servers} --alter "
        f"--entity-type topics --entity-name {topic} --add-config {config}"
    )


def _create(kafka: KafkaAccess, spec: TopicSpec) -> str:
    if spec.created_by == "faust":
        return "a coordinator's first start creates it (or create it as the plan says)"
    return "start a worker, or run `stepstream topics create`"


async def _configs(admin: AIOKafkaAdminClient, topics: list[str]) -> Configs:
    if not topics:
        return {}
    wanted = dict.fromkeys(CHECKED_CONFIGS)
    resources = [ConfigResource(ConfigResourceType.TOPIC, t, wanted) for t in topics]
    found: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _, _, _, name, entries in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found
