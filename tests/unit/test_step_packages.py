"""Step packages: handlers registered by decorator, resources opened once and closed at
shutdown, and loading errors that name the module."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stepstream.steps.builtin import default_registry
from stepstream.steps.packages import StepPackage, StepPackageError, load_packages, packages_in
from stepstream.steps.registry import StepContext


def package_with_a_resource(events: list[str]) -> StepPackage:
    package = StepPackage("test")

    @package.resource("client")
    async def client() -> AsyncIterator[str]:
        events.append("opened")
        yield "the client"
        events.append("closed")

    @package.step("USE_CLIENT")
    async def use(context: StepContext) -> dict[str, str]:
        return {"used": await package.get("client")}

    return package


async def test_a_resource_is_opened_once_on_first_use_and_closed_at_shutdown() -> None:
    events: list[str] = []
    package = package_with_a_resource(events)
    assert events == []  # nothing opened by defining it
    assert await package.get("client") == "the client"
    assert await package.get("client") == "the client"
    assert events == ["opened"]
    await package.close()
    assert events == ["opened", "closed"]
    assert await package.get("client") == "the client"  # a later use opens it again
    await package.close()
    assert events == ["opened", "closed", "opened", "closed"]


async def test_an_unknown_resource_names_the_known_ones() -> None:
    package = package_with_a_resource([])
    with pytest.raises(KeyError, match="test has no resource 'nope' \\(client\\)"):
        await package.get("nope")


def test_handlers_must_be_async_and_types_unique() -> None:
    package = StepPackage("test")

    @package.step("A")
    async def first(context: StepContext) -> None:
        return None

    with pytest.raises(ValueError, match="step type 'A' is defined twice"):
        package.step("A")(first)
    with pytest.raises(TypeError, match="the handler of 'B' must be async"):
        package.step("B")(lambda context: None)  # type: ignore[arg-type,return-value]


def test_a_registry_refuses_a_package_that_redefines_a_type() -> None:
    registry = default_registry()
    package = StepPackage("shadowing")

    @package.step("noop")
    async def noop(context: StepContext) -> None:
        return None

    with pytest.raises(ValueError, match="step package shadowing: noop already registered"):
        registry.include(package)


def test_the_builtin_steps_are_a_package_too() -> None:
    registry = default_registry()
    assert set(registry) == {"noop", "sleep", "fail"}
    assert [package.name for package in registry.packages] == ["builtin"]


def test_loading_names_the_module_and_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StepPackageError, match="'no_such_steps' could not be imported: "):
        packages_in("no_such_steps")
    (tmp_path / "broken_steps.py").write_text("raise RuntimeError('no config')\n")
    (tmp_path / "plain_module.py").write_text("X = 1\n")
    (tmp_path / "good_steps.py").write_text(
        "from stepstream import StepPackage\nsteps = StepPackage('good')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StepPackageError, match="RuntimeError: no config"):
        packages_in("broken_steps")
    with pytest.raises(StepPackageError, match="'plain_module' defines no StepPackage"):
        packages_in("plain_module")
    loaded = load_packages(["good_steps", "good_steps"])
    assert [package.name for package in loaded] == ["good"]  # once, however often named
    for name in ("broken_steps", "plain_module", "good_steps"):
        sys.modules.pop(name, None)
