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
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_core_module_imports_io_libraries() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 6
    for module in modules:
        leaked = imported_roots(module) & FORBIDDEN
        assert not leaked, f"{module.name} imports {sorted(leaked)}"


def test_importing_the_core_loads_no_io_library() -> None:
    probe = (
        "import sys, workflows; "
        f"print(sorted(set({sorted(FORBIDDEN)!r}) & {{m.split('.')[0] for m in sys.modules}}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == "[]"
