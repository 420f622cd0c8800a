"""The composition root: the one place that builds a worker from its parts.

`streams` gives the faust app, its tables and the Engine the agents share; `steps` and
`infra` the step handlers and the domain services behind them; `agents` the agents. It
builds the resources (`infra.resources`) and hands each agent and step package what it
uses.
Only this module imports all of them, so the engine knows nothing of the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from stepstream.agents import coordinator, correlator, executor, intake, metric_sampler, persister
from stepstream.infra.ai import OpenAICompatibleClassifier, PriorityClassifier, RulesClassifier
from stepstream.infra.cache import TieredCache
from stepstream.infra.priority import PriorityService
from stepstream.infra.resources import Resources
from stepstream.steps.builtin import default_registry
from stepstream.steps.maintenance import MaintenanceSteps
from stepstream.steps.packages import load_packages
from stepstream.steps.registry import StepContext, StepRegistry
from stepstream.streams import announcer
from stepstream.streams.engine import Engine, Worker, WorkerOptions, create_engine
from stepstream.streams.events import envelope
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.local_store import trust_or_forget
from stepstream.streams.settings import Settings
from stepstream.streams.topics import declare_topics


@contextlib.asynccontextmanager
async def priority_service(settings: Settings) -> AsyncIterator[PriorityService]:
    """The configured AI provider (or the rules) behind the AI response cache; its HTTP
    and Redis clients are closed when the worker shuts down."""
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
    try:
        yield PriorityService(classifier, model, cache)
    finally:
        if isinstance(classifier, OpenAICompatibleClassifier):
            await classifier.close()
        await redis.aclose()


@dataclass
class ComposedWorker:
    """A worker's parts: the Kafka runtime, the resources beside it and the step types."""

    engine: Engine
    resources: Resources
    registry: StepRegistry

    async def close(self) -> None:
        await self.engine.close()
        await self.close_resources()

    async def close_resources(self) -> None:
        await self.resources.close()
        for package in self.registry.packages:  # step packages' own resources
            await package.close()


def notifier(engine: Engine) -> Callable[[StepContext, dict[str, Any]], Awaitable[None]]:
    """How the maintenance steps publish a notification: onto the notifications topic."""

    async def publish(context: StepContext, notification: dict[str, Any]) -> None:
        origin = {
            "execution_id": context.execution_id,
            "workflow_id": context.workflow_id,
            "workflow_version": context.workflow_version,
            "tenant_id": context.tenant_id,
            "user_id": context.user_id,
        }
        record = envelope("notification", origin, notification["notification_id"], **notification)
        await engine.send(engine.names.notifications, context.execution_id, "Notification", record)

    return publish


def build_worker(
    settings: Settings, options: WorkerOptions, step_modules: Sequence[str] = ()
) -> ComposedWorker:
    """The engine with every step type registered (built-in, maintenance, the installed
    step packages and those of `step_modules`) and the agents of its roles installed,
    each given what it uses. A worker without the executor role still knows every step
    type: its catalog accepts only definitions whose step types are registered."""
    registry = default_registry()
    for package in load_packages(step_modules):
        registry.include(package)
    engine = create_engine(settings, options, registry)
    resources = Resources(settings.database_url, settings.redis_url)
    maintenance = MaintenanceSteps(
        resources.database, lambda: priority_service(settings), notifier(engine)
    )
    registry.include(maintenance.package)
    if "coordinator" in options.roles:
        intake.install(engine, resources.redis)
        coordinator.install(engine)
        correlator.install(engine)
    if "executor" in options.roles:
        executor.install(engine, registry)
    if "persister" in options.roles:
        persister.install(engine, resources.database)
    announcer.install(engine)
    metric_sampler.install(engine, resources.database)
    worker = ComposedWorker(engine, resources, registry)

    @engine.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_resources(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await worker.close_resources()  # the engine closes its own catalog

    return worker


def run_worker(
    settings: Settings, options: WorkerOptions, loglevel: str, step_modules: Sequence[str] = ()
) -> None:
    """Load the step packages, declare the topics (with the configured partitions), then
    run until stopped. A package that cannot be loaded stops it before anything starts."""
    load_packages(step_modules)  # StepPackageError before any connection is made
    asyncio.run(declare_topics(kafka_access(settings), settings))
    import uvloop

    # uvloop: the worker spends a large share of its time in the event loop itself.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())  # asyncio.run closed the last one
    engine = build_worker(settings, options, step_modules).engine
    trust_or_forget(options.data_dir, Path(engine.app.conf.tabledir))
    worker = Worker(
        engine.app, options.data_dir, settings.log_format, loglevel=loglevel, quiet=True
    )
    worker.execute_from_commandline()
