"""An execution's critical path: the chain of dependencies that decided when it ended.

From the step that finished last, go back to the dependency of it that finished last,
and so on to a step that depends on nothing: shortening any other step would not have
ended the execution sooner. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def critical_path(
    depends_on: Mapping[str, Sequence[str]], finished_at: Mapping[str, float]
) -> list[str]:
    """The path, first step first; empty when no step finished. Steps missing from
    `finished_at` (never ran) are not on it; ties go to the step id that sorts last, so
    the path is the same whatever the order of the mappings."""
    if not finished_at:
        return []
    step = max(finished_at, key=lambda s: (finished_at[s], s))
    path = [step]
    seen = {step}
    while True:
        done = [d for d in depends_on.get(step, ()) if d in finished_at and d not in seen]
        if not done:
            return path[::-1]
        step = max(done, key=lambda d: (finished_at[d], d))
        path.append(step)
        seen.add(step)
