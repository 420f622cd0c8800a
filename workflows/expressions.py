"""Step conditions (`when:`): small expressions over JSON data, checked when a definition
is validated and evaluated by the coordinator when a step's dependencies have finished.

The syntax is a subset of Python's expression syntax, parsed with `ast` and compiled
into closures (no `eval`, no attribute of any Python object is reachable):

    steps.assess.priority == "URGENT" and input.amount > 100
    "vip" in input.tags or len(steps.lookup.matches) == 0

- names: `input` (the workflow input) and `steps` (the outputs of the step's ancestors
  that completed: a skipped step has no output, so `has(steps.x)` tells);
- `a.b` and `a["b"]` read a key of an object, `a[0]` an item of a list;
- literals: strings, numbers, `true`/`false`/`null` (or Python's spellings), lists;
- `and`, `or`, `not`, comparisons (`== != < <= > >= in`, `not in`), `+ - * / %`;
- functions: `len(x)`, `has(x)` (whether the key or item exists), `lower(s)`, `upper(s)`.

A missing key is an error, not a false (`has` tests for one); so is a result that is not
true or false. The coordinator fails the step with the error: a condition that cannot be
evaluated is a bug in the definition or in an upstream step's output, and saying so beats
silently skipping.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Scope = Mapping[str, Any]
Compiled = Callable[[Scope], Any]


class ExpressionError(ValueError):
    """An expression that cannot be compiled; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.column = column


class EvaluationError(ValueError):
    """An expression that compiled but cannot be evaluated on this data."""


class _Missing:
    """What a path to a key that does not exist reads as, inside `has(...)` only."""


MISSING = _Missing()

CONSTANTS = {"true": True, "false": False, "null": None}
COMPARISONS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "len": len,
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
}


@dataclass(frozen=True)
class Condition:
    """A compiled condition; `steps` names the step ids it reads."""

    text: str
    steps: frozenset[str]
    _run: Compiled
    _paths: tuple[tuple[str, Compiled], ...] = ()  # the data it reads, to show what it saw

    def evaluate(self, workflow_input: Any, outputs: Mapping[str, Any]) -> bool:
        try:
            result = self._run({"input": workflow_input, "steps": outputs})
        except EvaluationError:
            raise
        except (TypeError, ZeroDivisionError, AttributeError) as error:
            raise EvaluationError(str(error)) from None
        if not isinstance(result, bool):
            raise EvaluationError(f"the condition is {result!r}, not true or false")
        return result

    def value(self, workflow_input: Any, outputs: Mapping[str, Any]) -> Any:
        """The expression's value, whatever its kind (for expressions that are not
        conditions, such as a wait's `until`)."""
        try:
            return self._run({"input": workflow_input, "steps": outputs})
        except EvaluationError:
            raise
        except (TypeError, ZeroDivisionError, AttributeError) as error:
            raise EvaluationError(str(error)) from None

    def name(self, workflow_input: Any, outputs: Mapping[str, Any]) -> str:
        """The expression's value as a name (a correlation key, an assignee): a string or
        an integer, not empty."""
        value = self.value(workflow_input, outputs)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise EvaluationError(f"gave {value!r}, not a string or an integer")
        return str(value)

    def saw(self, workflow_input: Any, outputs: Mapping[str, Any]) -> str:
        """The values the condition read, e.g. `steps.assess.priority = "LOW"`."""
        scope = {"input": workflow_input, "steps": outputs}
        seen = []
        for text, read in self._paths:
            try:
                value = read(scope)
            except (EvaluationError, TypeError):
                value = MISSING
            shown = "absent" if value is MISSING else json.dumps(value, default=str)
            seen.append(f"{text} = {shown if len(shown) <= 80 else shown[:77] + '...'}")
        return ", ".join(seen)


def compile_condition(text: str) -> Condition:
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"syntax error: {error.msg}", error.offset or 1) from None
    compiler = _Compiler(source)
    run = compiler.compile(tree.body)
    return Condition(text, frozenset(compiler.steps), run, tuple(compiler.paths))


def _column(node: ast.AST) -> int:
    return getattr(node, "col_offset", 0) + 1


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.steps: set[str] = set()
        self.paths: list[tuple[str, Compiled]] = []

    def compile(self, node: ast.expr) -> Compiled:
        match node:
            case ast.Constant(value=value) if value is None or isinstance(
                value, str | int | float | bool
            ):
                return lambda scope: value
            case ast.Name(id=name) if name in CONSTANTS:
                constant = CONSTANTS[name]
                return lambda scope: constant
            case ast.Name(id="input" | "steps" as name):
                return lambda scope: scope[name]
            case ast.Name(id=name):
                raise ExpressionError(f"unknown name {name!r} (input, steps)", _column(node))
            case ast.Attribute() | ast.Subscript():
                written = ast.get_source_segment(self.source, node) or ast.unparse(node)
                self.paths.append((written, self._path(node, tolerant=True)))
                return self._path(node, tolerant=False)
            case ast.List(elts=items) | ast.Tuple(elts=items):
                parts = [self.compile(item) for item in items]
                return lambda scope: [part(scope) for part in parts]
            case ast.BoolOp(op=ast.And(), values=values):
                parts = [self.compile(value) for value in values]
                return lambda scope: all(_truth(part(scope)) for part in parts)
            case ast.BoolOp(op=ast.Or(), values=values):
                parts = [self.compile(value) for value in values]
                return lambda scope: any(_truth(part(scope)) for part in parts)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                inner = self.compile(operand)
                return lambda scope: not _truth(inner(scope))
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                inner = self.compile(operand)
                return lambda scope: -inner(scope)
            case ast.BinOp(left=left, op=op, right=right) if type(op) in ARITHMETIC:
                apply, a, b = ARITHMETIC[type(op)], self.compile(left), self.compile(right)
                return lambda scope: apply(a(scope), b(scope))
            case ast.Compare(left=left, ops=ops, comparators=rights):
                return self._compare(node, left, ops, rights)
            case ast.Call(
                func=ast.Name(id="has"), args=[ast.Attribute() | ast.Subscript() as path]
            ):
                inner = self._path(path, tolerant=True)
                return lambda scope: inner(scope) is not MISSING
            case ast.Call(func=ast.Name(id=name), args=[argument], keywords=[]) if (
                name in FUNCTIONS
            ):
                function, inner = FUNCTIONS[name], self.compile(argument)
                return lambda scope: function(inner(scope))
            case ast.Call(func=ast.Name(id="has")):
                raise ExpressionError("has() takes one key path, e.g. has(steps.x)", _column(node))
            case ast.Call(func=ast.Name(id=name)) if name in FUNCTIONS:
                raise ExpressionError(f"{name}() takes one argument", _column(node))
            case ast.Call(func=ast.Name(id=name)):
                known = ", ".join(sorted({*FUNCTIONS, "has"}))
                raise ExpressionError(f"unknown function {name!r} ({known})", _column(node))
        raise ExpressionError(f"{type(node).__name__} is not allowed in a condition", _column(node))

    def _compare(
        self, node: ast.expr, left: ast.expr, ops: list[ast.cmpop], rights: list[ast.expr]
    ) -> Compiled:
        for op in ops:
            if type(op) not in COMPARISONS:
                raise ExpressionError(f"{type(op).__name__} is not allowed", _column(node))
        first = self.compile(left)
        steps = [
            (COMPARISONS[type(op)], self.compile(right))
            for op, right in zip(ops, rights, strict=True)
        ]

        def compare(scope: Scope) -> bool:
            current = first(scope)
            for test, right in steps:
                following = right(scope)
                if not test(current, following):
                    return False
                current = following
            return True

        return compare

    def _note_step(self, node: ast.Attribute | ast.Subscript) -> None:
        """`steps.x` or `steps["x"]`: remember `x`, so validation can check it."""
        if not (isinstance(node.value, ast.Name) and node.value.id == "steps"):
            return
        if isinstance(node, ast.Attribute):
            self.steps.add(node.attr)
        elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            self.steps.add(node.slice.value)
        else:
            raise ExpressionError("steps[...] takes a step id in quotes", _column(node))

    def _path(self, node: ast.expr, tolerant: bool) -> Compiled:
        """A lookup chain; with `tolerant`, a missing key reads as MISSING (for `has`)."""
        if not isinstance(node, ast.Attribute | ast.Subscript):
            return self.compile(node)
        self._note_step(node)
        base = self._path(node.value, tolerant)
        key = (
            (lambda scope, attr=node.attr: attr)
            if isinstance(node, ast.Attribute)
            else self.compile(node.slice)
        )
        where = ast.get_source_segment(self.source, node) or ast.unparse(node)

        def read(scope: Scope) -> Any:
            container = base(scope)
            if container is MISSING:
                return MISSING
            index = key(scope)
            try:
                if isinstance(container, Mapping) and isinstance(index, str):
                    return container[index]
                if (
                    isinstance(container, list)
                    and isinstance(index, int)
                    and not isinstance(index, bool)
                ):
                    return container[index]
            except (KeyError, IndexError):
                if tolerant:
                    return MISSING
                raise EvaluationError(f"{where}: no such key or item") from None
            if tolerant:
                return MISSING
            raise EvaluationError(f"{where}: cannot read {index!r} of {_kind(container)}")

        return read


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"{value!r} is not true or false")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__
