"""A worker serves its metrics (infra.metrics, on 127.0.0.1) and announces what it
serves and where its metrics are (streams.announcements): at start, every interval, and
a tombstone when it stops cleanly, so `register`, `stepstream workers` and `stepstream
stats` find it."""

from __future__ import annotations

import logging
from typing import Any, cast

from stepstream.infra.metrics import METRICS, serve
from stepstream.streams.announcements import ANNOUNCE_INTERVAL_MS, Announcement, encode
from stepstream.streams.engine import Engine
from stepstream.streams.events import now_ms

log = logging.getLogger(__name__)


def install(engine: Engine) -> None:
    name = engine.options.name
    topic = engine.names.workers
    started = now_ms()
    served: list[str] = []  # the metrics URL, once the server runs
    runs_steps = "executor" in engine.options.roles

    async def send(value: bytes | None) -> None:
        producer = await engine.producer()
        await producer.send_and_wait(topic, name.encode(), value, None, None, None)

    async def announce() -> None:
        if not served:
            await serve_metrics()
        announcement = Announcement(
            worker=name,
            step_types=tuple(sorted(engine.step_types)) if runs_steps else (),
            queues=(),
            builtin_executor=runs_steps,
            started_at_ms=started,
            seen_at_ms=now_ms(),
            interval_ms=ANNOUNCE_INTERVAL_MS,
            metrics_url=served[0] or None,
        )
        try:
            await send(encode(announcement))
        except Exception:
            log.warning("could not announce worker %s", name, exc_info=True)

    async def serve_metrics() -> None:
        try:
            _, port = await serve(engine.settings.metrics_port, lambda: engine.ready)
        except OSError as error:  # the port is taken: the worker runs on, unobserved
            log.error("cannot serve metrics on port %s: %s", engine.settings.metrics_port, error)
            served.append("")
            return
        served.append(f"http://127.0.0.1:{port}/metrics")
        log.info("worker %s serves metrics on %s", name, served[0])

    async def measure_lag() -> None:
        """The coordinator group's lag on this worker's partitions: what is on them past
        the offset committed for them."""
        consumer = engine.app.consumer
        committed = cast(Any, consumer)._committed_offset  # noqa: SLF001 - no public view
        lag = 0
        for tp in engine.assigned:
            if tp.topic in engine.names.all():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - (committed.get(tp) or 0))
        METRICS.consumer_lag.labels(engine.app.conf.id).set(lag)

    if engine.tables is not None:  # the coordinator role
        engine.app.timer(interval=5.0)(measure_lag)

    engine.app.task(announce)
    engine.app.timer(interval=ANNOUNCE_INTERVAL_MS / 1000)(announce)

    @engine.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def leave(sender: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await send(None)  # a tombstone: gone on purpose, not silent
        except Exception:
            log.warning("could not withdraw worker %s", name, exc_info=True)
