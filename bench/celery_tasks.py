"""The Celery side of bench/peers.py: one step, a no-op unless told to sleep."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

URL = os.environ.get("CELERY_PEER_URL", "redis://127.0.0.1:16379/15")
app = Celery("celery_peer", broker=URL, backend=URL)
app.conf.update(result_expires=600, worker_prefetch_multiplier=4, task_acks_late=True)


@app.task
def step(*inputs: Any, seconds: float = 0.0) -> dict[str, bool]:
    if seconds:
        time.sleep(seconds)  # the step's work: a prefork child does one step at a time
    return {"ok": True}
