"""Topic names and their declaration. Every execution-keyed topic has the same number of
partitions, so one execution's events meet in one partition and its table rows are local."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, fields

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.reaching import cluster_topics, with_admin
from stepstream.streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicNames:
    workflow_start: str
    executions: str
    step_ready: str
    step_completed: str  # workers' reports (StepCompleted, StepFailed, StepHeartbeat)
    step_outcomes: str  # the coordinator's decisions on steps (StepAttemptEnded, StepSkipped)
    workflow_completed: str
    workflow_rejected: str
    dead_letter: str
    definitions: str
    notifications: str
    replay: str  # operator requests (resume, retry, rerun-from) for the coordinator
    workers: str  # what each worker serves (streams.announcements)
    events: str  # events from outside, and waits for them, keyed by correlation key
    events_unmatched: str  # events no wait took within their time to live

    @classmethod
    def for_prefix(cls, prefix: str) -> TopicNames:
        return cls(
            workflow_start=f"{prefix}.workflow-start",
            executions=f"{prefix}.executions",
            step_ready=f"{prefix}.step-ready",
            step_completed=f"{prefix}.step-completed",
            step_outcomes=f"{prefix}.step-outcomes",
            workflow_completed=f"{prefix}.workflow-completed",
            workflow_rejected=f"{prefix}.workflow-rejected",
            dead_letter=f"{prefix}.dead-letter",
            definitions=f"{prefix}.definitions",
            notifications=f"{prefix}.notifications",
            replay=f"{prefix}.replay",
            workers=f"{prefix}.workers",
            events=f"{prefix}.events",
            events_unmatched=f"{prefix}.events-unmatched",
        )

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]

    def catalogs(self) -> list[str]:
        """The compacted, one-partition topics every reader takes whole."""
        return [self.definitions, self.workers]

    def task_queue(self, queue: str) -> str:
        """Where the step-ready events of a step with `queue: <queue>` go."""
        return f"{self.step_ready.removesuffix('.step-ready')}.tasks.{queue}"


class TopicsMissing(LookupError):
    """The engine's topics do not exist yet. Clients never create them: a broker that
    creates topics on first use would give them one partition. A worker does, or
    `stepstream topics create`, with the configured partitions."""

    def __init__(self, missing: list[str]) -> None:
        prefix = missing[0].split(".", 1)[0]
        super().__init__(
            f"topics {', '.join(sorted(missing))} do not exist: start a worker with "
            f"STEPSTREAM_TOPIC_PREFIX={prefix}, or run `stepstream topics create`"
        )
        self.missing = missing


async def require_topics(kafka: KafkaAccess, topics: list[str], timeout: float = 30.0) -> None:
    """Raise TopicsMissing unless every topic exists; asks without creating any."""
    existing = await cluster_topics(kafka, timeout)
    missing = [topic for topic in topics if topic not in existing]
    if missing:
        raise TopicsMissing(missing)


async def declare_topics(
    kafka: KafkaAccess, settings: Settings, queues: Iterable[str] = ()
) -> None:
    """Create every topic of the plan (streams.topic_plan) that does not exist yet: the
    engine's, and those of the given task queues. faust creates its own (changelogs, the
    leader topic) with the same replication settings. Then warn about any topic whose
    durability is below the plan's."""
    from stepstream.streams.topic_plan import plan_topics

    plan = [spec for spec in plan_topics(settings, tuple(queues)) if spec.created_by == "engine"]

    async def create_missing(admin: AIOKafkaAdminClient) -> None:
        existing = set(await admin.list_topics())
        for spec in plan:  # one at a time: a concurrent creator must not fail us
            if spec.name in existing:
                continue
            topic = NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=spec.configs,
            )
            try:
                await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                pass
        await _wait_for_metadata(admin, [spec.name for spec in plan])

    await cluster_topics(kafka)  # a clear error at once when no broker can be used
    await with_admin(kafka, create_missing)
    if settings.replication_factor > 1:
        from stepstream.streams.topic_check import check_topics

        for finding in await check_topics(kafka, plan, only_durability=True):
            log.warning("topic %s", finding.line())


async def _wait_for_metadata(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    for _ in range(100):
        if set(topics) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topics not visible in metadata: {topics}")


async def delete_topics_with_prefix(kafka: KafkaAccess, prefix: str) -> int:
    """Delete every topic whose name starts with `prefix` (the engine's topics, its
    changelogs and faust's internal topics all do); returns how many. For tests and
    benchmarks: a single local broker slows down as thousands of their topics pile up."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
        return len(doomed)
    finally:
        await admin.close()
