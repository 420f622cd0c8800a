"""The Kafka runtime the agents share: the Faust app, topics, tables, the definition
catalog, sending, dead letters, consuming and partition ownership.

It knows nothing of the agents, the step handlers, PostgreSQL or Redis:
`stepstream.worker` composes a worker from this engine, those resources and the agents."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import faust
from faust.types import TP, EventT, ProducerT, StreamT

from stepstream.infra.metrics import METRICS
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams import faust_fixes, linger, log_format, log_throttle
from stepstream.streams.batches import take_available
from stepstream.streams.codec import register_codec
from stepstream.streams.definitions import DefinitionCatalog
from stepstream.streams.due_events import DueEvents
from stepstream.streams.engine_group import EngineGroup
from stepstream.streams.events import now_ms
from stepstream.streams.guard import PartitionGuard
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.local_store import mark_clean
from stepstream.streams.partitioner import cached_partitioner
from stepstream.streams.roles import ROLES
from stepstream.streams.settings import Settings
from stepstream.streams.tables import DurableApp, Tables, declare_tables
from stepstream.streams.topic_plan import durable_configs
from stepstream.streams.topics import TopicNames

log = logging.getLogger(__name__)
# One line each time the worker is ready after a rebalance, whatever --loglevel says.
ready_log = logging.getLogger("stepstream.ready")
ready_log.setLevel(logging.INFO)


class ConsumedMessage(Protocol):
    """What faust's messages and aiokafka's records both carry."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Worker(faust.Worker):
    """faust's worker, with the clean-shutdown mark of `local_store` in `data_dir`."""

    def __init__(
        self, app: faust.App, data_dir: Path, log_format: str = "text", **options: Any
    ) -> None:
        super().__init__(app, **options)
        self.data_dir = data_dir
        self.log_format = log_format

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """faust leaves the root logger at DEBUG and filters in the handler, so every
        debug call in faust and aiokafka builds a record; at load that costs several
        percent of the worker's CPU. Setting the root level drops them at the call."""
        super().on_setup_root_logger(logger, level)
        logger.setLevel(level or logging.WARNING)
        for handler in logger.handlers:  # the loggers' levels filter, so `ready_log` shows
            handler.setLevel(logging.NOTSET)
        log_throttle.install(logger)
        if self.log_format == "json":
            log_format.use_json(logger)

    async def on_shutdown(self) -> None:
        """Runs after the app (agents, tables, producer) has stopped."""
        await super().on_shutdown()
        if not (self.crashed or self.app.crashed):
            mark_clean(self.data_dir)


def default_data_dir(worker_name: str) -> Path:
    """Beside the local services' data (infra/local/services.sh uses the same variable)."""
    state_dir = os.environ.get("STEPSTREAM_STATE_DIR", "/var/tmp/stepstream")  # noqa: S108
    return Path(state_dir) / "workers" / worker_name


# What a dead letter keeps of the original bytes: well under the producer's 1 MiB
# request limit whatever the key and the error add.
DEAD_LETTER_PAYLOAD_LIMIT = 256 * 1024
# How often due timers are looked at: a timer fires at most this late, plus the send.
DUE_EVENTS_INTERVAL_SECONDS = 0.2


@dataclass(frozen=True)
class WorkerOptions:
    name: str
    data_dir: Path
    store: str = "rocksdb://"
    executor_concurrency: int = 32
    roles: frozenset[str] = frozenset(ROLES)


@dataclass
class Engine:
    settings: Settings
    options: WorkerOptions
    app: faust.App
    names: TopicNames
    topics: dict[str, faust.TopicT]
    tables: Tables | None  # None in a worker without the coordinator role
    catalog: DefinitionCatalog
    step_types: Collection[str]  # what the worker's registry serves, kept up to date by it
    guard: PartitionGuard
    due: DueEvents = field(default_factory=DueEvents)  # the agents' wall-clock timers
    _catalog_started: asyncio.Lock = field(default_factory=asyncio.Lock)
    _catalog_running: bool = False
    stale_events: int = 0  # dropped by the generation fence
    ignored_reports: int = 0  # step reports the coordinator did not apply (stale, late)
    assigned: set[TP] = field(default_factory=set)  # kept by faust's rebalance signals
    ready: bool = False  # partitions assigned and recovered: /healthz answers 200

    def stream_tables(self) -> Tables:
        if self.tables is None:
            raise RuntimeError(f"worker {self.options.name} does not have the coordinator role")
        return self.tables

    async def definitions(self) -> DefinitionCatalog:
        async with self._catalog_started:
            if not self._catalog_running:
                await self.catalog.start()
                self._catalog_running = True
        return self.catalog

    async def close(self) -> None:
        async with self._catalog_started:
            if self._catalog_running:
                await self.catalog.stop()
                self._catalog_running = False

    async def producer(self) -> ProducerT:
        return cast(ProducerT, await self.app.maybe_start_producer())

    def owns(self, message: ConsumedMessage) -> bool:
        """Whether this worker may act on a message now: its partition is assigned here,
        in the current consumer generation, and no rebalance is under way. Events fetched
        before a rebalance can reach an agent after it; acting on them would write state
        for a partition another worker owns (delivery rule 4, fence stale generations).
        Called right before table writes, with no await between the check and them."""
        app = self.app
        generation = getattr(message, "generation_id", app.consumer_generation_id)
        tp = getattr(message, "tp", None) or TP(message.topic, message.partition)
        return (
            app.flow_control.is_active()
            and generation == app.consumer_generation_id
            and tp in self.assigned
        )

    async def consume_batches(
        self,
        stream: StreamT[Any],
        handle: Callable[[StreamT[Any], Sequence[EventT[Any]]], Awaitable[None]],
        size: int = 500,
    ) -> None:
        """Run `handle` on batches of up to `size` events, those this worker still owns: a
        batch is what is waiting, handed over at once (`streams.batches`; at most the
        batch window while events keep coming). Each batch is acknowledged after `handle`
        returns, whatever it raised, so `handle` deals with each event's errors itself; an
        error escaping it dead-letters the whole batch."""
        within = self.settings.batch_window_ms / 1000
        async for events in take_available(cast(faust.Stream[Any], stream), size, within):
            owned = [event for event in events if self.fenced(event)]
            if not owned:
                continue
            try:
                await handle(stream, owned)
            except Exception as error:
                log.exception("batch of %d events failed", len(owned))
                for event in owned:
                    await self.dead_letter(event.message, error)

    def fenced(self, event: EventT[Any]) -> bool:
        """True when this worker owns the event; otherwise it is dropped unacknowledged."""
        if self.owns(event.message):
            return True
        # Not acknowledged, so faust cannot commit past it: when the partition comes back
        # to this worker, the same offset is fetched again and it is that copy whose
        # acknowledgement counts.
        event.message.acked = True
        self.stale_events += 1
        log.info(
            "dropped %s/%s/%s: fetched before a rebalance",
            event.message.topic,
            event.message.partition,
            event.message.offset,
        )
        return False

    async def consume(
        self, stream: StreamT[Any], handle: Callable[[EventT[Any]], Awaitable[None]]
    ) -> None:
        """Run `handle` on every event this worker still owns; whatever it raises
        dead-letters that event and processing goes on, so no input can stop a worker."""
        async for event in stream.events():
            if not self.fenced(event):
                continue
            try:
                await handle(event)
            except Exception as error:
                log.exception(
                    "failed on %s/%s/%s",
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                )
                await self.dead_letter(event.message, error)

    async def send(
        self, topic: str, key: str, name: str, record: dict[str, Any]
    ) -> asyncio.Future[Any]:
        """Encode and hand to the producer; returns the delivery future without waiting
        for it. Straight to faust's producer, not through `Topic.send`: that path costs
        ~130 us more per message here (futures, sensors, callbacks) and adds nothing we
        use. faust flushes this same producer before it commits consumed offsets."""
        producer = await self.producer()
        delivery = await producer.send(
            topic, key.encode(), CODEC.encode(name, record), None, None, None
        )
        return cast(asyncio.Future[Any], delivery)

    async def dead_letter(
        self, message: ConsumedMessage, error: Exception | str
    ) -> asyncio.Future[Any]:
        """Send the message to the dead-letter topic with the reason. The original bytes
        are cut to DEAD_LETTER_PAYLOAD_LIMIT, so a letter can never be too large to send;
        topic, partition and offset point at the whole record. Never raises: a letter
        that cannot be sent is logged, and the returned future carries the failure."""
        payload = message.value or b""
        METRICS.dead_letters.labels(message.topic).inc()
        record: dict[str, Any] = {
            "event_id": f"{message.topic}/{message.partition}/{message.offset}",
            "timestamp": now_ms(),
            "source_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
            "key": (message.key or b"")[:1024] or None,
            "payload": payload[:DEAD_LETTER_PAYLOAD_LIMIT],
            "payload_size": len(payload),
        }
        record["error"] = record["error"][:4096]
        try:  # carry the execution's identity when the event could be read at all
            decoded = CODEC.decode(payload).record
            for name in ("execution_id", "workflow_id", "workflow_version", "tenant_id", "user_id"):
                record[name] = decoded.get(name)
        except EventCodecError:
            pass
        try:
            producer = await self.producer()
            delivery = await producer.send(
                self.names.dead_letter,
                message.key,
                CODEC.encode("DeadLetter", record),
                None,
                None,
                None,
            )
        except Exception as failure:  # noqa: BLE001 - a worker never stops on bad input
            log.error(
                "could not dead-letter %s (%s): %r", record["event_id"], record["error"], failure
            )
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(failure)
            return failed
        context = {
            "execution_id": record.get("execution_id"),
            "workflow_id": record.get("workflow_id"),
        }
        log.warning("dead-lettered %s: %s", record["event_id"], record["error"], extra=context)
        return cast(asyncio.Future[Any], delivery)


def create_engine(
    settings: Settings, options: WorkerOptions, step_types: Collection[str]
) -> Engine:
    """The app, its topics and, with the coordinator role, its tables. The catalog accepts
    definitions whose step types are in `step_types` (a live collection: a registry's
    types registered after this call count too). A worker without the coordinator role
    is a producer-only app (`<prefix>-steps`): it joins no faust group (in
    `<prefix>-engine` it would take a share of the coordinator's partitions), and its
    executor and persister start at once instead of after a first rebalance, which after
    a kill waits out the dead process's session."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    faust_fixes.apply()
    register_codec()
    coordinates = "coordinator" in options.roles
    app = DurableApp(
        f"{settings.topic_prefix}-{'engine' if coordinates else 'steps'}",
        **kafka_access(settings).faust_options(),
        store=options.store,
        datadir=str(options.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # A dead worker's partitions move within ~10 s instead of faust's default 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=settings.commit_interval_ms / 1000,
        producer_linger_ms=settings.producer_linger_ms,
        producer_partitioner=cached_partitioner,
        producer_acks=-1,
        stream_wait_empty=False,
        # faust's livelock detector reports an assigned partition with unread records that
        # no stream consumes after this long (300 s by default): a stuck partition is then
        # in the log within a minute. Partitions paused on purpose are not checked (fix 8).
        stream_processing_timeout=30.0,
    )
    app.durable_configs = durable_configs(settings)
    linger.install(app, settings.producer_linger_ms, settings.producer_linger_busy_ms)
    topics = {
        name: app.topic(
            name,
            partitions=settings.topic_partitions,
            key_serializer="raw",
            value_serializer="raw",
        )
        for name in names.all()
        if name not in names.catalogs()
    }
    engine = Engine(
        settings=settings,
        options=options,
        app=app,
        names=names,
        topics=topics,
        tables=declare_tables(app, settings.topic_partitions) if coordinates else None,
        catalog=DefinitionCatalog(kafka_access(settings), names.definitions, step_types),
        step_types=step_types,
        guard=PartitionGuard(kafka_access(settings), settings.stall_seconds),
    )
    if coordinates:
        inputs = {names.workflow_start, names.executions, names.step_completed, names.replay}
        engine.guard.watch(EngineGroup(engine, inputs))

    @app.task  # type: ignore[untyped-decorator]
    async def guard_progress() -> None:
        await engine.guard.run()

    @app.timer(interval=DUE_EVENTS_INTERVAL_SECONDS)  # type: ignore[untyped-decorator]
    async def fire_due_events() -> None:
        await engine.due.fire(now_ms(), engine.send)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        engine.assigned = set(assigned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        engine.assigned -= set(revoked)
        engine.ready = False  # a rebalance: ready again once it is complete

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def say_ready(sender: Any, **kwargs: Any) -> None:
        engine.ready = True
        inputs = sorted(tp for tp in engine.assigned if tp.topic in names.all())
        ready_log.info(
            "worker %s ready: %d partitions of %s (consumer generation %s)",
            options.name,
            len(inputs),
            ", ".join(sorted({tp.topic for tp in inputs})) or "no topic",
            app.consumer_generation_id,
        )

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_catalog(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await engine.close()

    if not coordinates:
        app.producer_only = True  # faust: a producer and app tasks, no consumer, no tables

        @app.task  # type: ignore[untyped-decorator]
        async def ready_at_start() -> None:
            engine.ready = True
            roles = ", ".join(sorted(options.roles))
            ready_log.info("worker %s ready: no faust group (roles %s)", options.name, roles)

    return engine
