"""The forms of human tasks: JSON Schema (draft 2020-12), checked when a definition is
registered, and the answers checked against them before they complete a step. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

Form = Draft202012Validator  # a compiled form

MOST_ERRORS = 5  # an answer's errors said at once; the rest are counted


def form_problem(form: Any) -> str | None:
    """Why `form` is not a JSON Schema a task can be answered against; None: it is."""
    if not isinstance(form, Mapping):
        return f"must be a JSON Schema (a mapping), got {type(form).__name__}"
    try:
        Draft202012Validator.check_schema(form)
    except SchemaError as error:
        return f"not a valid JSON Schema: {error.message} (at {_where(error.absolute_path)})"
    return None


def compile_form(form: Mapping[str, Any]) -> Form:
    return Draft202012Validator(form)


def answer_errors(form: Form, answer: Any) -> list[str]:
    """What is wrong with `answer` by the form, each with where; empty: it matches."""
    errors = sorted(form.iter_errors(answer), key=_order)
    said = [f"{_where(e.absolute_path)}: {e.message}" for e in errors[:MOST_ERRORS]]
    if len(errors) > MOST_ERRORS:
        said.append(f"and {len(errors) - MOST_ERRORS} more")
    return said


def _order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(part) for part in error.absolute_path)


def _where(path: Any) -> str:
    parts = [str(part) for part in path]
    return "/".join(parts) if parts else "(the answer)"
