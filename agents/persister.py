"""Persister: executions, the coordinator's step decisions and operators' replay requests
into PostgreSQL, in batches, off the hot path.

It reads the coordinator's output topics (step outcomes, execution outcomes, rejected
starts), the executions and replay topics, and the definitions, in its own consumer group,
so a slow or absent database delays only the audit trail, never a workflow. Writes are
idempotent upserts: a redelivered batch changes nothing, and events of one execution
may arrive in any order across topics.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition

from stepstream.agents.audit_rows import (
    CLOSE_TASK,
    CLOSE_TASKS_OF,
    COUNT_OPEN_TASKS,
    INSERT_CHILD,
    INSERT_IGNORED,
    INSERT_REJECTED,
    INSERT_REPLAY,
    INSERT_STAGED_STEPS,
    INSERT_TASK,
    INSERT_UNMATCHED,
    STAGE_STEPS,
    STEP_COLUMNS,
    UPSERT_EXECUTION,
    AuditRows,
    rows_for,
)
from stepstream.infra.critical_paths import CriticalPaths
from stepstream.infra.definition_store import save_definition
from stepstream.infra.metrics import METRICS
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.engine import Engine
from stepstream.streams.groups import LagGauge, commit, group_consumer, keep_running
from stepstream.streams.guard import GroupMember
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.topics import declare_topics
from stepstream.workflows import InvalidDefinition, build_definition

log = logging.getLogger(__name__)

Database = Callable[[], Awaitable[asyncpg.Pool]]  # the worker's pool, made on first use

BATCH_SIZE = 500
BATCH_WINDOW_MS = 500
TRANSIENT = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
)


class Persister:
    def __init__(self, engine: Engine, database: Database) -> None:
        self.engine = engine
        self.database = database
        self.critical_paths = CriticalPaths()

    async def write(self, rows: AuditRows) -> None:
        pool = await self.database()
        with METRICS.timed_query("persist_batch"):
            async with pool.acquire() as connection, connection.transaction():
                if rows.executions:
                    await connection.executemany(UPSERT_EXECUTION, rows.executions)
                if rows.steps:
                    await connection.execute(STAGE_STEPS)  # per connection; emptied at commit
                    await connection.copy_records_to_table(
                        "steps_in", records=rows.steps, columns=STEP_COLUMNS
                    )
                    await connection.execute(INSERT_STAGED_STEPS)
                if rows.ignored:
                    await connection.executemany(INSERT_IGNORED, rows.ignored)
                if rows.replays:
                    await connection.executemany(INSERT_REPLAY, rows.replays)
                if rows.rejected:
                    await connection.executemany(INSERT_REJECTED, rows.rejected)
                if rows.unmatched:
                    await connection.executemany(INSERT_UNMATCHED, rows.unmatched)
                if rows.children:
                    await connection.executemany(INSERT_CHILD, rows.children)
                if rows.tasks:  # before their closures: a batch may open and close one
                    await connection.executemany(INSERT_TASK, rows.tasks)
                if rows.closed_tasks:
                    await connection.executemany(CLOSE_TASK, rows.closed_tasks)
                if rows.ended:  # one statement a batch, whatever the workflows
                    await connection.execute(CLOSE_TASKS_OF, rows.ended)
                if rows.touch_tasks:
                    METRICS.human_tasks_open.set(await connection.fetchval(COUNT_OPEN_TASKS))
                if rows.completed or rows.steps:  # whichever batch brings the last part
                    steps = ((r[0], r[1], r[12], r[13]) for r in rows.steps)
                    await self.critical_paths.record(connection, rows.completed, steps)

    async def check_definitions(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Definitions published straight onto the topic, past `register`, are checked
        here, once (this consumer group reads each record once), as `register` checks
        them; the invalid go to the dead-letter topic with every problem. The workers'
        catalogs skip them."""
        letters, valid = [], []
        for message in messages:
            try:
                record = CODEC.decode(message.value or b"").record
                body = json.loads(record["definition_json"])
                valid.append(build_definition(body, self.engine.step_types))
            except (EventCodecError, InvalidDefinition, ValueError, KeyError) as error:
                reason = f"invalid definition: {type(error).__name__}: {error}"
                letters.append(await self.engine.dead_letter(message, reason))
        await asyncio.gather(*letters)  # delivered before the batch is committed
        queues = {step.queue for d in valid for step in d.steps if step.queue is not None}
        if queues:  # a definition published past `register` gets its task queues too
            settings = self.engine.settings
            await declare_topics(kafka_access(settings), settings, queues)
        if valid:  # for `describe` and queries; `register` saves its own the same way
            pool = await self.database()
            async with pool.acquire() as connection:
                for definition in valid:
                    await save_definition(connection, definition)

    async def persist(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        definitions = self.engine.names.definitions
        await self.check_definitions([m for m in messages if m.topic == definitions])
        messages = [m for m in messages if m.topic != definitions]
        decoded = []
        for message in messages:
            try:
                decoded.append((message, CODEC.decode(message.value or b"")))
            except EventCodecError:
                continue  # the coordinator dead-letters these; one report is enough
        try:
            await self.write_while_down(rows_for([event for _, event in decoded]))
        except asyncpg.PostgresError:
            # The database refused a row (a value it cannot store): one event must not
            # cost the batch its other rows. One at a time, then; the refused go to the
            # dead-letter topic with the database's reason.
            letters = []
            for message, event in decoded:
                try:
                    await self.write_while_down(rows_for([event]))
                except asyncpg.PostgresError as refused:
                    reason = f"persister: {type(refused).__name__}: {refused}"
                    letters.append(await self.engine.dead_letter(message, reason))
            await asyncio.gather(*letters)  # delivered before the batch is committed

    async def write_while_down(self, rows: AuditRows) -> None:
        """Write, retrying for as long as the database is unavailable (it may be
        restarting: hold the batch, do not drop it)."""
        if not rows:
            return
        delay = 0.5
        while True:
            try:
                await self.write(rows)
                return
            except TRANSIENT as error:
                log.warning("persister: database unavailable (%r), retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def run(self) -> None:
        """Batches from the group `<prefix>-persister`; offsets are committed after the
        batch is written, so a crash writes a batch twice (upserts) rather than never."""
        names = self.engine.names
        consumer = group_consumer(self.engine.settings, "persister")
        consumer.subscribe(
            [
                names.executions,
                names.step_outcomes,
                names.workflow_completed,
                names.workflow_rejected,
                names.replay,
                names.definitions,
                names.events_unmatched,
            ]
        )
        await consumer.start()
        group = f"{self.engine.settings.topic_prefix}-persister"
        lag = LagGauge(group)
        writing: set[TopicPartition] = set()  # a batch's partitions while it is written
        member = GroupMember(group, consumer, lambda: set(writing))
        self.engine.guard.watch(member)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=BATCH_WINDOW_MS, max_records=BATCH_SIZE)
                lag.measure(consumer)
                messages = [m for ms in batches.values() for m in ms]
                if not messages:
                    continue
                writing.update(batches)
                try:
                    await self.persist(messages)
                except Exception:
                    log.exception("persister: batch of %d events not written", len(messages))
                finally:
                    writing.clear()
                positions = {tp: ms[-1].offset + 1 for tp, ms in batches.items() if ms}
                await commit(consumer, positions)
        finally:
            self.engine.guard.unwatch(member)
            await consumer.stop()


def install(engine: Engine, database: Database) -> None:
    @engine.app.task  # type: ignore[untyped-decorator]
    async def run_persister() -> None:
        await keep_running("persister", lambda: Persister(engine, database).run())
