"""The core does no I/O: it imports no Kafka, database, cache or HTTP library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[3] / "workflows"
FORBIDDEN = {
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "asyncpg",
    "psycopg",
    "redis",
    "httpx",
    "aiohttp",
    "requests",
    "socket",
    "asyncio",
    "subprocess",
    "streams",
    "agents",
    "infra",
    "steps",
    "client",
    "cli",
    "demo",
}


def root(module: str) -> str:
    """`stepstream.streams.engine` -> `streams`; `aiokafka.admin` -> `aiokafka`."""
    parts = module.split(".")
    return parts[1] if parts[0] == "stepstream" and len(parts) > 1 else parts[0]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {root(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(root(node.module))
    return roots


def test_no_core_module_imports_io_libraries() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 6
    for module in modules:
        leaked = imported_roots(module) & FORBIDDEN
        assert not leaked, f"{module.name} imports {sorted(leaked)}"


def test_importing_the_core_loads_no_io_library() -> None:
    probe = (
        "import sys, stepstream.workflows; "
        "roots = {m.split('.')[1] if m.startswith('stepstream.') else m.split('.')[0]"
        " for m in sys.modules}; "
        f"print(sorted(set({sorted(FORBIDDEN)!r}) & roots))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == "[]"
