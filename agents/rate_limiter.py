"""Rate limiting for the intake: counts per (scope, fixed window) in a changelog-backed
table, decisions by the core's sliding-window arithmetic.

Start requests are keyed by tenant, so a tenant's users are all counted in one
partition, by the one worker that owns it; after a rebalance or a restart the counts
come back from the changelog. Keys: `user:<tenant>:<user>:<window start>`,
`workflow:<id>:<tenant>:<user>:<window start>`, `tenant:<tenant>:<window start>`. A
window's key is deleted two windows later, when the scope is next counted (faust's own
windowed tables have expiry problems after rebalances: faust-streaming#385).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.types import TableT

from stepstream.infra.metrics import METRICS
from stepstream.streams.settings import Settings
from stepstream.workflows import WorkflowDefinition
from stepstream.workflows.rate_limit import OverLimitPolicy, RateLimit, decide, window_start


@dataclass(frozen=True)
class Refusal:
    limit: str  # e.g. "user:10/60s"
    reason: str
    reset_at_ms: int

    @property
    def scope(self) -> str:
        """user, workflow (a definition's own limit per user) or tenant."""
        return self.limit.split(":")[0]


class RateLimiter:
    def __init__(
        self, settings: Settings, counts: TableT[bytes, Any], stats: TableT[bytes, Any]
    ) -> None:
        window_ms = settings.rate_limit_window_seconds * 1000
        self.enabled = settings.rate_limit_enabled
        self.default_policy = OverLimitPolicy(settings.rate_limit_policy)
        self.user_limit = RateLimit(settings.rate_limit_points, window_ms)
        self.tenant_limit = RateLimit(settings.rate_limit_tenant_points, window_ms)
        self.counts = counts
        self.stats = stats
        self.changed: set[str] = set()  # tenants whose totals are not yet mirrored

    def policy(self, definition: WorkflowDefinition) -> OverLimitPolicy:
        return definition.rate_limit.policy if definition.rate_limit else self.default_policy

    def queue_scope(self, request: dict[str, Any], definition: WorkflowDefinition) -> str:
        """The scope whose deferred starts must keep their order: the user's."""
        return self._scopes(request, definition)[0][0]

    def check(
        self, request: dict[str, Any], definition: WorkflowDefinition, now_ms: int
    ) -> Refusal | None:
        """None when every limit allows one more start now; otherwise which one refuses."""
        for scope, limit, who in self._scopes(request, definition):
            previous, current = self._counts(scope, limit, now_ms)
            decision = decide(previous, current, limit, now_ms)
            if not decision.allowed:
                label = f"{scope.split(':')[0]}:{limit.points}/{limit.window_ms // 1000}s"
                return Refusal(
                    label,
                    f"rate limit of {who} reached: {limit.points} starts "
                    f"per {limit.window_ms // 1000} s",
                    decision.reset_at_ms,
                )
        return None

    def count(self, request: dict[str, Any], definition: WorkflowDefinition, now_ms: int) -> None:
        for scope, limit, _ in self._scopes(request, definition):
            self._count(scope, limit, now_ms)
        self.record(request["tenant_id"], "allowed")

    def _scopes(
        self, request: dict[str, Any], definition: WorkflowDefinition
    ) -> list[tuple[str, RateLimit, str]]:
        tenant, user = request["tenant_id"], request["user_id"]
        if definition.rate_limit is not None:
            scopes = [
                (
                    f"workflow:{definition.id}:{tenant}:{user}",
                    definition.rate_limit,
                    f"user {user} on workflow {definition.id}",
                )
            ]
        else:
            scopes = [(f"user:{tenant}:{user}", self.user_limit, f"user {user}")]
        scopes.append((f"tenant:{tenant}", self.tenant_limit, f"tenant {tenant}"))
        return scopes

    def _key(self, scope: str, start: int) -> bytes:
        return f"{scope}:{start}".encode()

    def _counts(self, scope: str, limit: RateLimit, now_ms: int) -> tuple[int, int]:
        start = window_start(now_ms, limit.window_ms)
        previous = self.counts.get(self._key(scope, start - limit.window_ms)) or 0
        return int(previous), int(self.counts.get(self._key(scope, start)) or 0)

    def _count(self, scope: str, limit: RateLimit, now_ms: int) -> None:
        start = window_start(now_ms, limit.window_ms)
        key = self._key(scope, start)
        self.counts[key] = int(self.counts.get(key) or 0) + 1
        expired = self._key(scope, start - 2 * limit.window_ms)
        if self.counts.get(expired) is not None:
            del self.counts[expired]

    def record(self, tenant: str, outcome: str, scope: str = "all") -> None:
        """A decision, for `stats` (per tenant) and Prometheus (per scope: the scope
        that refused a start, or `all` for one every scope allowed)."""
        METRICS.rate_limit_decisions.labels(scope, outcome).inc()
        key = tenant.encode()
        totals = dict(self.stats.get(key) or {})
        totals[outcome] = totals.get(outcome, 0) + 1
        self.stats[key] = totals
        self.changed.add(tenant)

    def take_changed(self) -> dict[str, dict[str, int]]:
        """The current totals of the tenants recorded since the last call. The table is
        the truth; `stepstream stats` reads these totals from Redis (a few keys) instead
        of the table's changelog (one record per start, ever)."""
        changed, self.changed = self.changed, set()
        return {tenant: dict(self.stats.get(tenant.encode()) or {}) for tenant in changed}
