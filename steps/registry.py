"""The step-handler contract and the registry that maps step types to handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stepstream.steps.packages import StepPackage


@dataclass(frozen=True)
class StepContext:
    """Everything a handler may use. Two keys for side effects: `idempotency_key` is the
    same for every delivery of one attempt and new for each retry; `step_key` is the same
    for every attempt of the step. An effect that must happen once for the step (create
    a record, charge a card) keys on `step_key`: a retry after a timeout then finds what
    the timed-out attempt did."""

    execution_id: str
    workflow_id: str
    workflow_version: int
    step_id: str
    step_type: str
    attempt: int
    idempotency_key: str
    tenant_id: str
    user_id: str
    input: Mapping[str, Any]  # the workflow input
    steps: Mapping[str, Any]  # outputs of the dependencies, by step id
    config: Mapping[str, Any]  # the step's static config from the definition
    item: Any = None  # a fan-out instance's item (`forEach`); None for other steps
    index: int | None = None  # a fan-out instance's place in its list

    @property
    def step_key(self) -> str:
        return f"{self.execution_id}/{self.step_id}"


class StepHandler(Protocol):
    async def __call__(self, context: StepContext) -> Any:
        """Run the step and return a JSON-serialisable output."""


class PermanentStepError(Exception):
    """Raised by a handler when retrying cannot help (bad input, a business rule)."""


class UnknownStepType(PermanentStepError):
    pass


class StepRegistry(Mapping[str, StepHandler]):
    def __init__(self) -> None:
        self._handlers: dict[str, StepHandler] = {}
        self.packages: list[StepPackage] = []  # whose resources close at shutdown

    def include(self, package: StepPackage) -> None:
        """Every step type of the package; a type already registered is an error."""
        taken = sorted(set(package.handlers) & set(self._handlers))
        if taken:
            raise ValueError(f"step package {package.name}: {', '.join(taken)} already registered")
        self._handlers.update(package.handlers)
        self.packages.append(package)

    def register(self, step_type: str) -> Callable[[StepHandler], StepHandler]:
        def decorate(handler: StepHandler) -> StepHandler:
            if step_type in self._handlers:
                raise ValueError(f"step type {step_type!r} is already registered")
            self._handlers[step_type] = handler
            return handler

        return decorate

    def add(self, step_type: str, handler: StepHandler) -> None:
        self.register(step_type)(handler)

    def handler_for(self, step_type: str) -> StepHandler:
        try:
            return self._handlers[step_type]
        except KeyError:
            known = ", ".join(sorted(self._handlers))
            raise UnknownStepType(f"no handler for step type {step_type!r} ({known})") from None

    def __getitem__(self, step_type: str) -> StepHandler:
        return self._handlers[step_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)
