"""Priority decisions through the AI response cache, scoped by tenant.

The cache key is service, method, model and the normalised arguments (case and spacing
do not make a new request), under the tenant, so tenants never see each other's answers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stepstream.infra.ai import PriorityClassifier, PriorityDecision
from stepstream.infra.cache import TieredCache


def normalise(value: Any) -> str:
    return " ".join(str(value).lower().split()) if value is not None else ""


def ai_cache_key(
    tenant_id: str, service: str, method: str, model: str, arguments: dict[str, Any]
) -> str:
    canonical = json.dumps({k: normalise(v) for k, v in arguments.items()}, sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return f"{tenant_id}:{service}:{method}:{model}:{digest}"


class PriorityService:
    def __init__(
        self, classifier: PriorityClassifier, model: str, cache: TieredCache | None = None
    ) -> None:
        self.classifier = classifier
        self.model = model
        self.cache = cache

    async def decide(
        self, tenant_id: str, title: str, description: str, category: str | None
    ) -> PriorityDecision:
        async def ask() -> str:
            decision = await self.classifier.classify(title, description, category)
            return json.dumps([decision.priority, decision.reason, decision.source])

        if self.cache is None:
            raw = await ask()
        else:
            key = ai_cache_key(
                tenant_id,
                "priority",
                "classify",
                self.model,
                {"title": title, "description": description, "category": category},
            )
            raw = await self.cache.get_or_load(key, ask)
        priority, reason, source = json.loads(raw)
        return PriorityDecision(priority, reason, source)
