"""A worker announces what it serves (streams.announcements): at start, every interval,
and a tombstone when it stops cleanly, so `register` and `stepstream workers` see it."""

from __future__ import annotations

import logging
from typing import Any

from stepstream.streams.announcements import ANNOUNCE_INTERVAL_MS, Announcement, encode
from stepstream.streams.engine import Engine
from stepstream.streams.events import now_ms

log = logging.getLogger(__name__)


def install(engine: Engine) -> None:
    name = engine.options.name
    topic = engine.names.workers
    started = now_ms()

    async def send(value: bytes | None) -> None:
        producer = await engine.producer()
        await producer.send_and_wait(topic, name.encode(), value, None, None, None)

    async def announce() -> None:
        announcement = Announcement(
            worker=name,
            step_types=tuple(sorted(engine.registry)),
            queues=(),
            builtin_executor=True,
            started_at_ms=started,
            seen_at_ms=now_ms(),
            interval_ms=ANNOUNCE_INTERVAL_MS,
        )
        try:
            await send(encode(announcement))
        except Exception:
            log.warning("could not announce worker %s", name, exc_info=True)

    engine.app.task(announce)
    engine.app.timer(interval=ANNOUNCE_INTERVAL_MS / 1000)(announce)

    @engine.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def leave(sender: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await send(None)  # a tombstone: gone on purpose, not silent
        except Exception:
            log.warning("could not withdraw worker %s", name, exc_info=True)
