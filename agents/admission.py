"""The intake's stateful decisions: which start is admitted now, which waits in its
user's queue, which is refused for a rate limit; and, when a queue's wake is due, which
of its starts the window now allows.

Deferred starts wait in a changelog-backed table, one FIFO queue per user scope; while a
scope has a queue, its new starts join the end of it, so they are admitted in order.

No I/O and no awaits: the intake resolves definitions first and checks that it still
owns the partition, then calls these, so nothing runs between the ownership check and
the table writes (delivery rule 4). Tables are mappings, so a test runs this on dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from stepstream.agents.rate_limiter import RateLimiter
from stepstream.workflows import WorkflowDefinition
from stepstream.workflows.admission import (
    ADMIT,
    Admission,
    Verdict,
    check_input,
    rejection,
)
from stepstream.workflows.rate_limit import OverLimitPolicy

Request = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Wake:
    """A scope's queue to look at again at `due_ms`; the tenant is its partition's key."""

    due_ms: int
    scope: str
    tenant_id: str


class StartGate:
    def __init__(
        self,
        started: MutableMapping[bytes, Any],
        deferred: MutableMapping[bytes, Any],
        limiter: RateLimiter,
    ) -> None:
        self.started = started
        self.deferred = deferred
        self.limiter = limiter

    def seen(self, request: Request) -> Any:
        return self.started.get(request["execution_id"].encode())

    def admit(
        self, request: Request, definition: WorkflowDefinition | None, now_ms: int
    ) -> tuple[Admission, Wake | None]:
        """The verdict on a screened start whose definition was resolved, and the wake
        to arm when it opened a new queue. An admitted start is recorded as started."""
        invalid = check_input(request, definition)
        if invalid is not None:
            return invalid, None
        assert definition is not None
        limiter = self.limiter
        if not limiter.enabled:
            return self._admitted(request, definition, now_ms), None
        scope = limiter.queue_scope(request, definition)
        queued = self.deferred.get(scope.encode())
        if queued:  # earlier starts of this user wait: this one waits behind them
            self.deferred[scope.encode()] = [*queued, request]
            limiter.record(request["tenant_id"], "deferred", scope.split(":")[0])
            return Admission(Verdict.DEFER), None
        refusal = limiter.check(request, definition, now_ms)
        if refusal is None:
            limiter.count(request, definition, now_ms)
            return self._admitted(request, definition, now_ms), None
        if limiter.policy(definition) is OverLimitPolicy.DEFER:
            self.deferred[scope.encode()] = [request]
            limiter.record(request["tenant_id"], "deferred", refusal.scope)
            defer = Admission(Verdict.DEFER, reset_at_ms=refusal.reset_at_ms)
            return defer, Wake(refusal.reset_at_ms, scope, request["tenant_id"])
        limiter.record(request["tenant_id"], "rejected", refusal.scope)
        refused = rejection("rate_limited", refusal.reason, refusal.limit, refusal.reset_at_ms)
        return refused, None

    def wake(
        self,
        scope: str,
        definitions: Mapping[tuple[str, int], WorkflowDefinition | None],
        now_ms: int,
    ) -> tuple[list[tuple[Request, Admission]], Wake | None]:
        """Admit the scope's deferred starts, in order, while the window allows; reject
        those whose definition or input does not hold (`definitions`: what each
        (workflow id, version) asked for resolved to). Returns the verdicts in order and the
        next wake, when starts still wait."""
        queue = list(self.deferred.get(scope.encode()) or [])
        verdicts: list[tuple[Request, Admission]] = []
        wake = None
        while queue:
            request = queue[0]
            if self.seen(request) is not None:
                queue.pop(0)  # the same start was requested twice while waiting
                continue
            definition = definitions.get((request["workflow_id"], request["workflow_version"]))
            invalid = check_input(request, definition)
            if invalid is not None:
                queue.pop(0)
                verdicts.append((request, invalid))
                continue
            assert definition is not None
            refusal = self.limiter.check(request, definition, now_ms)
            if refusal is not None:
                wake = Wake(refusal.reset_at_ms, scope, request["tenant_id"])
                break
            self.limiter.count(request, definition, now_ms)
            queue.pop(0)
            verdicts.append((request, self._admitted(request, definition, now_ms)))
        if queue:
            self.deferred[scope.encode()] = queue
        elif self.deferred.get(scope.encode()) is not None:
            del self.deferred[scope.encode()]
        return verdicts, wake

    def _admitted(self, request: Request, definition: WorkflowDefinition, now_ms: int) -> Admission:
        """Record the start: when, and the version it pinned."""
        self.started[request["execution_id"].encode()] = [now_ms, definition.version]
        return ADMIT

    def forget(self, execution_ids: list[str]) -> None:
        """Retention deleted these executions' checkpoints: their start ids deduplicate
        no more."""
        for execution_id in execution_ids:
            key = execution_id.encode()
            if self.started.get(key) is not None:
                del self.started[key]
