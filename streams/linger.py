"""The producer's linger follows the worker's load: short while the worker has CPU to
spare, long while it has none.

Every hop of a workflow waits up to the linger, so an idle engine wants it short. At
saturation the worker's records spread over every partition of half a dozen topics, a
record or two per partition per 10 ms: each becomes a batch of its own, and aiokafka and
the broker pay per batch (a builder, a future, a partition entry in the request and in
the broker's log). Measured (bench/pipeline.py --phases 23, 6,000 diamonds, alternated),
following the load against a fixed 10 ms: 21-26% less worker CPU per step at saturation,
36-45% less broker CPU, 29-36% more steps/s, and the same delays at a paced 200 steps/s;
a fixed 40 ms would add 30 ms to each of a lone diamond's 8 hops. So the linger is the
configured one until the worker's process has been busy for a whole look, and the longer
one until it has clearly had CPU to spare again.
A flush (faust's, before each commit) waits for lingering batches too: a commit takes
up to the linger longer, which the commit rule does not mind.

aiokafka 0.14 sets the linger once, when its producer is made
(`MessageAccumulator._linger_time`, aiokafka/producer/message_accumulator.py; each new
batch copies it). `apply` sets that attribute; tests/integration/test_linger.py checks
on aiokafka's own producer that a batch made afterwards lingers for the new time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Of one core, over a look. The worker's Python runs on one core at a time (the GIL):
# measured on 2 shared cores, it used 0.93-0.99 at saturation, and 0.75-0.84 at a paced
# 200 steps/s, which it keeps up with (the short linger's latency is wanted there).
BUSY_SHARE = 0.9  # the worker is short of CPU
IDLE_SHARE = 0.8  # below this, it has CPU to spare again (the gap keeps it from flapping)


@dataclass
class LoadFollowingLinger:
    """The linger for the worker's CPU share over the last look: `decide` is the rule,
    `look` reads the clocks for it."""

    idle_ms: int
    busy_ms: int
    busy: bool = False
    # (wall clock, process CPU) at the last look; from creation, so that what the process
    # spent before (imports, recovery) does not count as load.
    _last: tuple[float, float] = field(
        default_factory=lambda: (time.monotonic(), time.process_time())
    )

    def decide(self, cpu_share: float) -> int:
        """The linger after a look at which the process used `cpu_share` of one core."""
        if cpu_share >= BUSY_SHARE:
            self.busy = True
        elif cpu_share < IDLE_SHARE:
            self.busy = False
        return max(self.busy_ms, self.idle_ms) if self.busy else self.idle_ms

    def look(self) -> int:
        """The linger for the CPU this process has used since the last look."""
        now, used = time.monotonic(), time.process_time()
        last_now, last_used = self._last
        self._last = (now, used)
        elapsed = now - last_now
        return self.decide((used - last_used) / elapsed if elapsed > 0 else 0.0)


def apply(producer: Any, linger_ms: int) -> bool:
    """Set an aiokafka producer's linger for the batches it makes from now on; False when
    it already was that."""
    accumulator = producer._message_accumulator  # noqa: SLF001
    if accumulator._linger_time == linger_ms / 1000:  # noqa: SLF001
        return False
    accumulator._linger_time = linger_ms / 1000  # noqa: SLF001
    return True


LOOK_SECONDS = 1.0


def install(app: Any, idle_ms: int, busy_ms: int) -> LoadFollowingLinger:
    """A timer that looks at the worker's CPU each second and sets faust's producer's
    linger to match; nothing when the two lingers are the same."""
    linger = LoadFollowingLinger(idle_ms, busy_ms)
    if busy_ms <= idle_ms:
        return linger

    @app.timer(interval=LOOK_SECONDS)  # type: ignore[untyped-decorator]
    async def follow_load() -> None:
        wanted = linger.look()
        producer = getattr(app.producer, "_producer", None)  # aiokafka's, once started
        if producer is not None and apply(producer, wanted):
            state = "busy" if linger.busy else "idle"
            log.debug("producer linger %d ms: the worker is %s", wanted, state)

    return linger
