"""Step packages: how a team brings its own step types to a worker.

    from stepstream import StepContext, StepPackage

    steps = StepPackage("billing")

    @steps.resource("http")
    async def http_client():  # opened once per worker, on first use; closed at shutdown
        async with httpx.AsyncClient() as client:
            yield client

    @steps.step("CHARGE_CARD")
    async def charge(context: StepContext) -> dict:
        client = await steps.get("http")
        ...

A worker runs a package named with `stepstream worker --steps billing.steps`, or one
published under the `stepstream.steps` entry-point group (`pip install` is enough):
    [project.entry-points."stepstream.steps"]
    billing = "billing.steps:steps"
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from importlib.metadata import entry_points
from typing import Any, TypeVar

from stepstream.steps.registry import StepHandler
from stepstream.workflows.definition import RetryPolicy, StepTypeDefaults

ENTRY_POINT_GROUP = "stepstream.steps"
ResourceFactory = Callable[[], AbstractAsyncContextManager[Any]]
F = TypeVar("F", bound=Callable[..., Any])


class StepPackageError(Exception):
    """A step package that cannot be loaded; the message names it and the cause."""


class StepPackage:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, StepHandler] = {}
        self.defaults: dict[str, StepTypeDefaults] = {}  # applied by `register`
        self._factories: dict[str, ResourceFactory] = {}
        self._opened: dict[str, Any] = {}
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()

    def step(
        self, step_type: str, *, timeout_ms: int | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[StepHandler], StepHandler]:
        """Register an async function of StepContext as the handler of `step_type`. The
        timeout and retry policy apply to steps of this type that set neither (a step's
        own setting wins, then these, then the workflow's defaults)."""
        if timeout_ms is not None and timeout_ms <= 0:
            raise ValueError(f"{self.name}: {step_type} timeout_ms must be positive")
        if retry is not None and retry.max_attempts < 1:
            raise ValueError(f"{self.name}: {step_type} retry.max_attempts must be at least 1")

        def register(handler: StepHandler) -> StepHandler:
            if step_type in self.handlers:
                raise ValueError(f"{self.name}: step type {step_type!r} is defined twice")
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(f"{self.name}: the handler of {step_type!r} must be async")
            self.handlers[step_type] = handler
            if timeout_ms is not None or retry is not None:
                self.defaults[step_type] = StepTypeDefaults(timeout_ms, retry)
            return handler

        return register

    def resource(self, name: str) -> Callable[[F], F]:
        """Register a long-lived client: an async generator that yields it once (or a
        function returning an async context manager). It is entered on first `get` and
        left when the worker shuts down."""

        def register(factory: F) -> F:
            if inspect.isasyncgenfunction(factory):
                self._factories[name] = contextlib.asynccontextmanager(factory)
            else:
                self._factories[name] = factory
            return factory

        return register

    async def get(self, name: str) -> Any:
        """The package's resource `name`, created the first time it is asked for."""
        async with self._lock:
            if name not in self._opened:
                try:
                    factory = self._factories[name]
                except KeyError:
                    known = ", ".join(sorted(self._factories)) or "none"
                    raise KeyError(f"{self.name} has no resource {name!r} ({known})") from None
                self._opened[name] = await self._stack.enter_async_context(factory())
            return self._opened[name]

    async def close(self) -> None:
        """Leave every resource that was opened, the last opened first."""
        async with self._lock:
            self._opened.clear()
            stack, self._stack = self._stack, AsyncExitStack()
            await stack.aclose()


def packages_in(module_name: str) -> list[StepPackage]:
    """The StepPackage objects a module defines at its top level."""
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise StepPackageError(
            f"step package {module_name!r} could not be imported: {type(error).__name__}: {error}"
        ) from error
    found = [value for value in vars(module).values() if isinstance(value, StepPackage)]
    if not found:
        raise StepPackageError(f"step package {module_name!r} defines no StepPackage")
    return found


def installed_packages() -> list[StepPackage]:
    """The packages published under the `stepstream.steps` entry-point group."""
    found = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = entry.load()
        except Exception as error:
            raise StepPackageError(
                f"step package {entry.name!r} ({entry.value}) could not be loaded:"
                f" {type(error).__name__}: {error}"
            ) from error
        if not isinstance(value, StepPackage):
            raise StepPackageError(
                f"entry point {entry.name!r} ({entry.value}) is not a StepPackage"
            )
        found.append(value)
    return found


def load_packages(modules: Iterable[str] = ()) -> list[StepPackage]:
    """The installed packages, then those of the named modules; each once."""
    loaded: list[StepPackage] = []
    for package in [*installed_packages(), *(p for m in modules for p in packages_in(m))]:
        if all(package is not seen for seen in loaded):
            loaded.append(package)
    return loaded
