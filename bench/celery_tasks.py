"""The Celery side of bench/celery_peer.py: one no-op step, as the engine's `noop`."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

URL = os.environ.get("CELERY_PEER_URL", "redis://127.0.0.1:16379/15")
app = Celery("celery_peer", broker=URL, backend=URL)
app.conf.update(result_expires=600, worker_prefetch_multiplier=4, task_acks_late=True)


@app.task
def step(*inputs: Any) -> dict[str, bool]:
    return {"ok": True}
