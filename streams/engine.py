"""The Faust app and what the agents share: topics, tables, the catalog, sending."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import asyncpg
import faust
import redis.asyncio as aioredis
from faust.types import EventT, ProducerT, StreamT, TableT

from infra.ai import OpenAICompatibleClassifier, PriorityClassifier, RulesClassifier
from infra.cache import TieredCache
from infra.priority import PriorityService
from schemas.codec import CODEC, EventCodecError
from steps.builtin import default_registry
from steps.maintenance import MaintenanceSteps
from steps.registry import StepContext, StepRegistry
from streams import faust_fixes
from streams.codec import register_codec
from streams.definitions import DefinitionCatalog
from streams.events import envelope, now_ms
from streams.settings import Settings
from streams.topics import TopicNames

log = logging.getLogger(__name__)


class ConsumedMessage(Protocol):
    """What faust's messages and aiokafka's records both carry."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Worker(faust.Worker):
    """faust's worker leaves the root logger at DEBUG and filters in the handler, so every
    debug call in faust and aiokafka builds a record; at load that costs several percent
    of the worker's CPU. Setting the root level drops them at the call."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logger.setLevel(level or logging.WARNING)


def default_data_dir(worker_name: str) -> Path:
    """Beside the local services' data (scripts/services.sh uses the same variable)."""
    state_dir = os.environ.get("STEPSTREAM_STATE_DIR", "/var/tmp/stepstream")  # noqa: S108
    return Path(state_dir) / "workers" / worker_name


@dataclass(frozen=True)
class WorkerOptions:
    name: str
    data_dir: Path
    store: str = "rocksdb://"
    executor_concurrency: int = 32


@dataclass
class Engine:
    settings: Settings
    options: WorkerOptions
    app: faust.App
    names: TopicNames
    topics: dict[str, faust.TopicT]
    executions: TableT[bytes, Any]
    started: TableT[bytes, Any]
    rate_counts: TableT[bytes, Any]
    rate_stats: TableT[bytes, Any]
    rate_deferred: TableT[bytes, Any]
    catalog: DefinitionCatalog
    registry: StepRegistry
    _catalog_started: asyncio.Lock = field(default_factory=asyncio.Lock)
    _catalog_running: bool = False
    _pool: asyncpg.Pool | None = None
    _pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def database(self) -> asyncpg.Pool:
        """The worker's PostgreSQL pool, created on first use: a worker whose steps never
        touch the database never connects to it."""
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.settings.database_url, min_size=1, max_size=10
                )
            return self._pool

    async def publish_notification(
        self, context: StepContext, notification: dict[str, Any]
    ) -> None:
        origin = {
            "execution_id": context.execution_id,
            "workflow_id": context.workflow_id,
            "workflow_version": context.workflow_version,
            "tenant_id": context.tenant_id,
            "user_id": context.user_id,
        }
        record = envelope("notification", origin, notification["notification_id"], **notification)
        await self.send(self.names.notifications, context.execution_id, "Notification", record)

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
        async with self._pool_lock:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    async def producer(self) -> ProducerT:
        return cast(ProducerT, await self.app.maybe_start_producer())

    async def consume(
        self, stream: StreamT[Any], handle: Callable[[EventT[Any]], Awaitable[None]]
    ) -> None:
        """Run `handle` on every event; whatever it raises dead-letters that event and
        processing goes on, so no input can stop a worker."""
        async for event in stream.events():
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
        record: dict[str, Any] = {
            "event_id": f"{message.topic}/{message.partition}/{message.offset}",
            "timestamp": now_ms(),
            "source_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
            "key": message.key,
            "payload": message.value or b"",
        }
        try:  # carry the execution's identity when the event could be read at all
            decoded = CODEC.decode(message.value or b"").record
            for name in ("execution_id", "workflow_id", "workflow_version", "tenant_id", "user_id"):
                record[name] = decoded.get(name)
        except EventCodecError:
            pass
        log.warning("dead-lettered %s: %s", record["event_id"], record["error"])
        producer = await self.producer()
        delivery = await producer.send(
            self.names.dead_letter,
            message.key,
            CODEC.encode("DeadLetter", record),
            None,
            None,
            None,
        )
        return cast(asyncio.Future[Any], delivery)


def priority_service(settings: Settings) -> PriorityService:
    """The configured AI provider (or the rules) behind the AI response cache."""
    classifier: PriorityClassifier
    if settings.ai_base_url:
        classifier = OpenAICompatibleClassifier(
            settings.ai_base_url,
            settings.ai_api_key,
            settings.ai_model,
            timeout=settings.ai_timeout_seconds,
        )
        model = settings.ai_model
    else:
        classifier, model = RulesClassifier(), "rules"
    # Short socket timeouts: a Redis that is down must cost a step milliseconds, not seconds.
    redis = aioredis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    cache = TieredCache(
        "ai",
        redis,
        settings.ai_response_cache_ttl_ms,
        prefix=settings.topic_prefix,
        enabled=settings.cache_enabled,
    )
    return PriorityService(classifier, model, cache)


def create_engine(settings: Settings, options: WorkerOptions) -> Engine:
    names = TopicNames.for_prefix(settings.topic_prefix)
    faust_fixes.apply()
    register_codec()
    app = faust.App(
        f"{settings.topic_prefix}-engine",
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store=options.store,
        datadir=str(options.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # A dead worker's partitions move within ~10 s instead of faust's default 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_linger_ms=2,
        producer_acks=-1,
        stream_wait_empty=False,
    )
    topics = {
        name: app.topic(
            name,
            partitions=settings.topic_partitions,
            key_serializer="raw",
            value_serializer="raw",
        )
        for name in names.all()
        if name != names.definitions
    }
    # Keys are the execution id's bytes, as on the topics (key_type=bytes selects the raw
    # codec for the store and the changelog alike). Checkpoints are JSON; the coordinator
    # encodes them itself (value_type=bytes) because faust would encode each value twice,
    # once for the store and once for the changelog.
    executions = app.Table(
        "executions", partitions=settings.topic_partitions, key_type=bytes, value_type=bytes
    )
    started = app.Table("started", partitions=settings.topic_partitions, key_type=bytes)
    rate_counts = app.Table("rate-counts", partitions=settings.topic_partitions, key_type=bytes)
    rate_stats = app.Table("rate-stats", partitions=settings.topic_partitions, key_type=bytes)
    rate_deferred = app.Table("rate-deferred", partitions=settings.topic_partitions, key_type=bytes)
    engine = Engine(
        settings=settings,
        options=options,
        app=app,
        names=names,
        topics=topics,
        executions=executions,
        started=started,
        rate_counts=rate_counts,
        rate_stats=rate_stats,
        rate_deferred=rate_deferred,
        catalog=DefinitionCatalog(settings.kafka_bootstrap_servers, names.definitions),
        registry=default_registry(),
    )

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_catalog(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await engine.close()

    MaintenanceSteps(
        engine.database, priority_service(settings), engine.publish_notification
    ).register(engine.registry)
    from agents import coordinator, executor, intake, persister

    intake.install(engine)
    coordinator.install(engine)
    executor.install(engine)
    persister.install(engine)
    return engine
