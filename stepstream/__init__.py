"""stepstream: DAG workflows as event streams on Apache Kafka.

The public surface: the client producers use, the settings, the step contract, and the
definition types with their loader. Everything else is reachable under `stepstream.*`
but may change between releases.

Names are imported on first use, so `import stepstream.workflows` (the pure core) does
not load Kafka's client, and a producer importing the client does not load faust.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepstream.client import Outcome, ReplayRefused, StartRefused, WorkflowClient
    from stepstream.steps.packages import StepPackage
    from stepstream.steps.registry import (
        PermanentStepError,
        StepContext,
        StepHandler,
        StepRegistry,
    )
    from stepstream.streams.settings import Settings, SettingsError
    from stepstream.workflows import (
        InvalidDefinition,
        RetryPolicy,
        StepDefinition,
        WorkflowDefinition,
        build_definition,
        describe,
        format_for,
        parse_definition,
        plan,
    )

_HOMES = {
    "stepstream.client": ("Outcome", "ReplayRefused", "StartRefused", "WorkflowClient"),
    "stepstream.steps.packages": ("StepPackage",),
    "stepstream.steps.registry": (
        "PermanentStepError",
        "StepContext",
        "StepHandler",
        "StepRegistry",
    ),
    "stepstream.streams.settings": ("Settings", "SettingsError"),
    "stepstream.workflows": (
        "InvalidDefinition",
        "RetryPolicy",
        "StepDefinition",
        "WorkflowDefinition",
        "build_definition",
        "describe",
        "format_for",
        "parse_definition",
        "plan",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "InvalidDefinition",
    "Outcome",
    "PermanentStepError",
    "ReplayRefused",
    "RetryPolicy",
    "Settings",
    "SettingsError",
    "StartRefused",
    "StepContext",
    "StepDefinition",
    "StepHandler",
    "StepPackage",
    "StepRegistry",
    "WorkflowClient",
    "WorkflowDefinition",
    "__version__",
    "build_definition",
    "describe",
    "format_for",
    "parse_definition",
    "plan",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata loads email and socket: not at import
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("stepstream")
        except PackageNotFoundError:  # a checkout that was never installed
            return "0+unknown"
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'stepstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME_OF, "__version__"})
