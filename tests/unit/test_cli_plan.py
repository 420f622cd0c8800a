"""`stepstream plan FILE`: the plan for a valid file, every problem and status 2 otherwise."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from stepstream.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request.yaml"


def test_prints_the_text_plan() -> None:
    result = CliRunner().invoke(main, ["plan", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "level 2 (in parallel):" in result.output


def test_prints_mermaid_and_dot() -> None:
    mermaid = CliRunner().invoke(main, ["plan", str(EXAMPLE), "--format", "mermaid"])
    dot = CliRunner().invoke(main, ["plan", str(EXAMPLE), "--format", "dot"])
    assert mermaid.output.startswith("flowchart TD")
    assert dot.output.startswith('digraph "maintenance-request"')


def test_an_invalid_file_exits_2_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: w\nsteps:\n"
        "  - {id: a, type: noop, dependsOn: [b]}\n"
        "  - {id: b, type: noop, dependsOn: [a, ghost]}\n"
        "  - {id: c, type: noop, timeoutMs: 0}\n"
    )
    result = CliRunner().invoke(main, ["plan", str(bad)])
    assert result.exit_code == 2
    assert "depends on unknown step 'ghost'" in result.output
    assert "dependency cycle: a -> b -> a" in result.output
    assert "steps[2] (c).timeoutMs: must be a positive number" in result.output
