"""The package's shape: one import root, the roles in their own places, and who may
import whom (ARCHITECTURE.md, "Code layout")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import stepstream

PACKAGE = Path(stepstream.__file__).resolve().parent
ROOT = PACKAGE.parent
ROLES = (
    "agents",
    "cli",
    "client",
    "console",
    "demo",
    "infra",
    "schemas",
    "steps",
    "streams",
    "workflows",
)
OLD_ROOTS = set(ROLES)


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def modules_of(role: str) -> list[Path]:
    return sorted((ROOT / role).rglob("*.py"))


def role_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "stepstream" and len(parts) > 1 else None


def test_every_role_is_a_package_under_the_one_import_root() -> None:
    for role in ROLES:
        assert (PACKAGE / role).resolve() == ROOT / role, role
        assert (ROOT / role / "__init__.py").is_file(), role


def test_no_module_imports_a_bare_top_level_name() -> None:
    """`import streams` would work in a checkout and fail once installed."""
    files = [path for role in ROLES for path in modules_of(role)]
    files += sorted(PACKAGE.glob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
    files += sorted((ROOT / "bench").glob("*.py"))
    for path in files:
        bare = {name for name in imports_of(path) if name.split(".")[0] in OLD_ROOTS}
        assert not bare, f"{path.relative_to(ROOT)} imports {sorted(bare)}"


def test_the_runtime_knows_nothing_of_agents_client_or_command_line() -> None:
    """Only the composition root (`stepstream.worker`) imports the agents."""
    for role in ("streams", "steps", "infra", "schemas", "client"):
        for path in modules_of(role):
            used = {role_of(name) for name in imports_of(path)}
            assert not used & {"agents", "cli", "demo"}, f"{path.relative_to(ROOT)}: {used}"
    product = [path for role in ROLES if role != "agents" for path in modules_of(role)]
    importers = {
        path.relative_to(ROOT).as_posix()
        for path in [*product, *PACKAGE.glob("*.py")]
        if any(role_of(name) == "agents" for name in imports_of(path))
    }
    assert importers == {"stepstream/worker.py"}


def test_importing_the_client_loads_no_worker_code() -> None:
    probe = (
        "import sys, stepstream; stepstream.WorkflowClient; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('faust', 'mode')"
        " or m.split('.')[:2] in (['stepstream', 'agents'], ['stepstream', 'worker'],"
        " ['stepstream', 'cli'])))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_public_names_resolve() -> None:
    for name in stepstream.__all__:
        assert getattr(stepstream, name) is not None, name
    assert stepstream.__version__ != "0+unknown"
    assert (PACKAGE / "py.typed").is_file()


def test_the_roles_import_each_other_without_a_circle() -> None:
    """Lower layers never import upper ones: the roles' import graph has no cycle."""
    graph = {role: set() for role in ROLES}
    for role in ROLES:
        for path in modules_of(role):
            graph[role] |= {role_of(name) for name in imports_of(path)} & set(ROLES) - {role}
    done: set[str] = set()

    def visit(role: str, path: tuple[str, ...]) -> None:
        assert role not in path, f"import circle: {' -> '.join((*path, role))}"
        if role in done:
            return
        for used in sorted(graph[role]):
            visit(used, (*path, role))
        done.add(role)

    for role in ROLES:
        visit(role, ())


def test_the_kafka_runtime_uses_no_database_redis_or_step_code() -> None:
    """`streams` is the Kafka runtime: PostgreSQL, Redis and the step registry are the
    composition root's to build and hand over (`stepstream.worker`, `infra.resources`)."""
    for path in modules_of("streams"):
        used = imports_of(path)
        roots = {name.split(".")[0] for name in used}
        assert not roots & {"asyncpg", "redis"}, f"{path.relative_to(ROOT)}: {sorted(used)}"
        steps = {name for name in used if role_of(name) == "steps"}
        assert not steps, f"{path.relative_to(ROOT)} imports {sorted(steps)}"
