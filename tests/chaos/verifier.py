"""The chaos verifier: reads the public topics as a downstream service would, and
PostgreSQL for the side effects, and says in one line whether every execution was
delivered, or what is missing.

Rules checked (ARCHITECTURE.md, delivery semantics):
* every execution started has exactly one outcome, and it is `completed`;
* a record seen twice is the same logical event with the same event id: per execution
  one outcome id, per (execution, step, attempt, kind) one step-report id;
* the coordinator decided each attempt once: per (execution, step, attempt) one
  decision id and outcome on step-outcomes, per (execution, step) one `completed`, and
  every completed execution has a decision or a skip for each step it reported on;
* side effects are not doubled: one maintenance request and one notification per
  execution, and technicians' workloads equal the requests assigned to them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import asyncpg

from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import read_topic


@dataclass
class Verdict:
    expected: int
    completed: int = 0
    missing: list[str] = field(default_factory=list)
    not_completed: dict[str, str] = field(default_factory=dict)
    outcome_ids_differ: list[str] = field(default_factory=list)
    step_ids_differ: list[str] = field(default_factory=list)
    decided_twice: list[str] = field(default_factory=list)  # an attempt, or a completion
    undecided: list[str] = field(default_factory=list)  # steps of completed executions
    duplicates: int = 0
    doubled_side_effects: list[str] = field(default_factory=list)
    watchdog_resumes: int = 0  # from the workers' logs: the safety net, not a delivery
    stale_dropped: int = 0  # events the generation fence dropped, from the workers' logs
    guard_heals: int = 0  # stalled partitions the progress guard healed, from the logs

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.not_completed
            or self.outcome_ids_differ
            or self.step_ids_differ
            or self.decided_twice
            or self.undecided
            or self.doubled_side_effects
        )

    def line(self, faults: str) -> str:
        """The verdict, with `faults` saying what was done (kills, joins and leaves)."""
        head = "ALL-EXECUTIONS-COMPLETED" if self.ok else "EXECUTIONS-LOST"
        line = (
            f"chaos: {head} {self.completed}/{self.expected}, {faults}, duplicates"
            f" {self.duplicates} (identical ids), watchdog resumes {self.watchdog_resumes},"
            f" partitions healed by the guard {self.guard_heals},"
            f" stale events fenced {self.stale_dropped}"
        )
        if not self.ok:
            line += (
                f"; missing {len(self.missing)} {self.missing[:5]}"
                f", not completed {dict(list(self.not_completed.items())[:5])}"
                f", outcome ids differ {self.outcome_ids_differ[:5]}"
                f", step report ids differ {self.step_ids_differ[:5]}"
                f", decided twice {self.decided_twice[:5]}, undecided {self.undecided[:5]}"
                f", doubled side effects {self.doubled_side_effects[:5]}"
            )
        return line


async def verify(
    settings: Settings, execution_ids: set[str], maintenance_ids: set[str], database_url: str
) -> Verdict:
    names = TopicNames.for_prefix(settings.topic_prefix)
    verdict = Verdict(expected=len(execution_ids))

    outcome_ids: dict[str, set[str]] = defaultdict(set)
    statuses: dict[str, str] = {}
    for event in await read_topic(settings, names.workflow_completed):
        execution_id = event.record["execution_id"]
        outcome_ids[execution_id].add(event.record["event_id"])
        statuses[execution_id] = "completed" if event.name == "WorkflowCompleted" else "failed"
    for execution_id in sorted(execution_ids):
        if execution_id not in statuses:
            verdict.missing.append(execution_id)
        elif statuses[execution_id] != "completed":
            verdict.not_completed[execution_id] = statuses[execution_id]
        else:
            verdict.completed += 1
        if len(outcome_ids.get(execution_id, ())) > 1:
            verdict.outcome_ids_differ.append(execution_id)

    report_ids: dict[tuple[str, str, int, str], set[str]] = defaultdict(set)
    reports = Counter[tuple[str, str, int, str]]()
    for event in await read_topic(settings, names.step_completed):  # the workers' reports
        if event.name not in ("StepCompleted", "StepFailed"):
            continue  # heartbeats: each its own id
        record = event.record
        key = (record["execution_id"], record["step_id"], record["attempt"], event.name)
        report_ids[key].add(record["event_id"])
        reports[key] += 1
    verdict.duplicates = sum(count - 1 for count in reports.values())
    verdict.step_ids_differ = [
        f"{k[0]}/{k[1]}/{k[2]}" for k, ids in report_ids.items() if len(ids) > 1
    ]
    await check_decisions(settings, verdict, statuses, {(k[0], k[1]) for k in reports})

    if maintenance_ids:
        verdict.doubled_side_effects = await doubled_side_effects(database_url, maintenance_ids)
    return verdict


async def check_decisions(
    settings: Settings,
    verdict: Verdict,
    statuses: dict[str, str],
    reported: set[tuple[str, str]],
) -> None:
    """What the coordinator decided, on step-outcomes, as a downstream reader sees it."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    decisions: dict[tuple[str, str, int], set[tuple[str, str]]] = defaultdict(set)
    completions: dict[tuple[str, str], set[int]] = defaultdict(set)
    decided: set[tuple[str, str]] = set()
    for event in await read_topic(settings, names.step_outcomes):
        record = event.record
        step = (record["execution_id"], record["step_id"])
        decided.add(step)
        if event.name != "StepAttemptEnded" or record["outcome"] == "ignored":
            continue
        decisions[(*step, record["attempt"])].add((record["event_id"], record["outcome"]))
        if record["outcome"] == "completed":
            completions[step].add(record["attempt"])
    verdict.decided_twice = [
        f"{k[0]}/{k[1]}/{k[2]}: {sorted(v)}" for k, v in decisions.items() if len(v) > 1
    ] + [f"{k[0]}/{k[1]} completed at {sorted(v)}" for k, v in completions.items() if len(v) > 1]
    verdict.undecided = sorted(
        f"{execution_id}/{step_id}"
        for execution_id, step_id in reported - decided
        if statuses.get(execution_id) == "completed"
    )


async def doubled_side_effects(database_url: str, execution_ids: set[str]) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT split_part(r.idempotency_key, '/', 1) AS execution_id,"
            " count(DISTINCT r.id) AS requests, count(n.id) AS notifications"
            " FROM maintenance_requests r LEFT JOIN notifications n ON n.request_id = r.id"
            " GROUP BY 1"
        )
        doubled = [
            f"{row['execution_id']}: {row['requests']} requests, {row['notifications']} notices"
            for row in rows
            if row["execution_id"] in execution_ids
            and (row["requests"] != 1 or row["notifications"] != 1)
        ]
        mismatched = await connection.fetch(
            "SELECT t.name, t.workload, count(r.id) AS assigned FROM technicians t"
            " LEFT JOIN maintenance_requests r ON r.technician_id = t.id"
            " GROUP BY t.id HAVING t.workload <> count(r.id)"
        )
        doubled += [
            f"technician {row['name']}: workload {row['workload']}, assigned {row['assigned']}"
            for row in mismatched
        ]
        return doubled
    finally:
        await connection.close()


async def records_of(
    settings: Settings, topic: str, keys: set[bytes]
) -> list[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of every record of `topic` under one of `keys`."""
    from aiokafka import TopicPartition

    from stepstream.client.watch import reader, rewind

    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        found = []
        while any([await consumer.position(p) < ends[p] for p in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.partition, r.offset, r.value) for r in records if r.key in keys]
        return found
    finally:
        await consumer.stop()


async def evidence(settings: Settings, execution_ids: list[str]) -> str:
    """For a failed verdict: every record of these executions on the coordinator's and
    executor's topics and on the checkpoints' changelog, with partition and offset, the
    topics' ends and the groups' committed offsets, so a lost event can be told from
    one never produced, or never applied."""
    from aiokafka.admin import AIOKafkaAdminClient

    from stepstream.client.watch import changelog_topic
    from stepstream.schemas.codec import CODEC

    names = TopicNames.for_prefix(settings.topic_prefix)
    keys = {execution_id.encode() for execution_id in execution_ids}
    lines = []
    for topic in (names.executions, names.step_ready, names.step_completed):
        for partition, offset, value in await records_of(settings, topic, keys):
            event = CODEC.decode(value)
            record = event.record
            lines.append(
                f"{topic.rsplit('.', 1)[-1]}/{partition}@{offset} {record['execution_id']}"
                f" {event.name} step={record.get('step_id')} attempt={record.get('attempt')}"
                f" worker={record.get('worker')} at={record['timestamp']}"
            )
    for partition, offset, value in await records_of(settings, changelog_topic(settings), keys):
        lines.append(f"checkpoint changelog/{partition}@{offset}: {(value or b'')[:160]!r}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        for group in ("engine", "executor"):
            offsets = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}-{group}")
            committed = {
                f"{tp.topic.rsplit('.', 1)[-1]}/{tp.partition}": m.offset
                for tp, m in offsets.items()
            }
            lines.append(f"committed by {group}: {committed}")
    finally:
        await admin.close()
    return "\n".join(lines)
