"""How the command line tells an expected failure from a bug, and hides passwords.
(tests/integration/test_command_line.py runs the commands against unreachable services.)"""

from __future__ import annotations

from stepstream.cli.errors import explain, redact


def test_passwords_in_urls_are_redacted() -> None:
    text = "postgresql://app:s3cr3t@db:5432/x and redis://:pw@cache:6379/0"
    assert redact(text) == "postgresql://app:***@db:5432/x and redis://:***@cache:6379/0"
    assert redact("postgresql://app@db/x") == "postgresql://app@db/x"


def test_a_bug_keeps_its_traceback() -> None:
    assert explain(KeyError("x")) is None
    assert explain(OSError("disk full")) is None  # not raised inside a client library
