"""Templates: parametrised blocks of steps (`kind: template`, with typed `params:`), used
by workflows as a step (`use: {template, version, params}`) or turned into a workflow of
their own. Expansion happens when a workflow is registered, so a new template version
never changes a registered workflow, and running executions keep what they pinned.

Expanding a use at step `assign` inlines the template's steps as `assign.<step>`: the
template's first steps take the use's `dependsOn`, a step that depends on `assign` then
depends on the template's last steps, `${param}` in any string takes the parameter's
value (a string that is exactly `${param}` takes it with its type), and expressions
reading the template's steps read the renamed ones. Each expanded step says where it
came from (`from`). Pure: the templates come in as data.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stepstream.workflows.problems import InvalidDefinition, Problem
from stepstream.workflows.validation import build_definition

PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "object": (dict,),
}
STEP_LOCATION = re.compile(r"steps\[(\d+)\]")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Step fields whose strings are expressions that may read other steps.
EXPRESSION_PATHS: tuple[tuple[str, ...], ...] = (
    ("when",),
    ("forEach",),
    ("wait", "until"),
    ("waitFor", "correlationKey"),
    ("human", "assignee"),
)
USE_FIELDS = {"id", "use", "dependsOn", "name", "description"}


@dataclass(frozen=True, slots=True)
class Param:
    type: str
    default: Any = None
    required: bool = True


@dataclass(frozen=True)
class Template:
    id: str
    version: int
    params: Mapping[str, Param]
    steps: tuple[Mapping[str, Any], ...]  # raw steps, as written

    @property
    def label(self) -> str:
        return f"template {self.id} v{self.version}"


def parse_template(raw: Any) -> Template:
    """Read a `kind: template` document; InvalidDefinition with every shape problem."""
    problems: list[Problem] = []
    if not isinstance(raw, Mapping) or raw.get("kind") != "template":
        raise InvalidDefinition([Problem("kind", "a template says kind: template")])
    for key in sorted(
        set(raw) - {"kind", "id", "version", "name", "description", "params", "steps"}
    ):
        problems.append(Problem("(root)", f"unknown field {key!r} in a template"))
    template_id, version = raw.get("id"), raw.get("version", 1)
    if not isinstance(template_id, str) or not template_id:
        problems.append(Problem("id", "is required"))
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(Problem("version", f"must be a positive integer, got {version!r}"))
    params: dict[str, Param] = {}
    for name, spec in (raw.get("params") or {}).items():
        where = f"params.{name}"
        if not isinstance(spec, Mapping) or spec.get("type") not in PARAM_TYPES:
            known = ", ".join(PARAM_TYPES)
            problems.append(Problem(f"{where}.type", f"must be one of {known}"))
            continue
        param = Param(spec["type"], spec.get("default"), "default" not in spec)
        if not param.required and not _fits(param, param.default):
            problems.append(Problem(f"{where}.default", f"is not a {param.type}"))
        params[name] = param
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, Mapping) for s in steps):
        problems.append(Problem("steps", "must be a list of steps"))
        steps = []
    if problems:
        raise InvalidDefinition(problems)
    template = Template(str(template_id), int(version), params, tuple(steps))
    check_template(template)
    return template


def check_template(template: Template) -> None:
    """A template is checked as the workflow its defaults (or sample values) make."""
    samples = {
        name: param.default if not param.required else _sample(param.type)
        for name, param in template.params.items()
    }
    raw = {"id": f"template-{template.id}", "version": 1, "steps": []}
    raw["steps"] = [_substituted(step, samples) for step in template.steps]
    try:
        build_definition(raw)
    except InvalidDefinition as invalid:
        raise InvalidDefinition(
            [Problem(f"{template.label}: {p.location}", p.message) for p in invalid.problems]
        ) from None


def expand(raw: Mapping[str, Any], templates: Mapping[tuple[str, int], Template]) -> dict[str, Any]:
    """The workflow with every `use:` step replaced by its template's steps. `templates`
    by (id, version); version 0 stands for the latest given. InvalidDefinition names the
    use site (and, for a problem inside the template, the template's step)."""
    steps = raw.get("steps")
    if not isinstance(steps, list) or not any(isinstance(s, Mapping) and "use" in s for s in steps):
        return dict(raw)
    problems: list[Problem] = []
    expanded: list[Any] = []
    leaves: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        if not (isinstance(step, Mapping) and "use" in step):
            expanded.append(step)
            continue
        where = f"steps[{index}] ({step.get('id')})"
        block = _use(step, where, templates, problems)
        if block is not None:
            expanded += block[0]
            leaves[str(step["id"])] = block[1]
    if problems:
        raise InvalidDefinition(problems)
    for step in expanded:  # a dependency on a block is one on its last steps
        if isinstance(step, dict) and isinstance(step.get("dependsOn"), list):
            step["dependsOn"] = [d for dep in step["dependsOn"] for d in leaves.get(dep, [dep])]
    return {**raw, "steps": expanded}


def _use(
    step: Mapping[str, Any],
    where: str,
    templates: Mapping[tuple[str, int], Template],
    problems: list[Problem],
) -> tuple[list[dict[str, Any]], list[str]] | None:
    for key in sorted(set(step) - USE_FIELDS):
        problems.append(Problem(where, f"a use of a template takes no {key!r}"))
    use = step["use"]
    if not isinstance(use, Mapping) or not isinstance(use.get("template"), str):
        problems.append(Problem(f"{where}.use", "must be {template: ID, version: N, params: {}}"))
        return None
    version = use.get("version", 0)
    template = templates.get((use["template"], version))
    if template is None:
        wanted = version or "latest"
        problems.append(
            Problem(
                f"{where}.use", f"template {use['template']!r} version {wanted} is not registered"
            )
        )
        return None
    values = _params(template, use.get("params") or {}, f"{where}.use.params", problems)
    if values is None:
        return None
    prefix = str(step["id"])
    local = {s.get("id") for s in template.steps}
    depended = {d for s in template.steps for d in s.get("dependsOn", [])}
    block = []
    for number, body in enumerate(template.steps):
        copy = _substituted(body, values)
        copy["id"] = f"{prefix}.{body['id']}"
        inner = list(copy.get("dependsOn", []))
        copy["dependsOn"] = (
            [f"{prefix}.{d}" for d in inner] if inner else list(step.get("dependsOn", []))
        )
        for path in EXPRESSION_PATHS:
            _rename_at(copy, path, prefix, local)
        copy["from"] = f"{template.label} steps[{number}] ({body['id']}), used at {where}"
        block.append(copy)
    last = [f"{prefix}.{s['id']}" for s in template.steps if s.get("id") not in depended]
    return block, last


def _params(
    template: Template, given: Any, where: str, problems: list[Problem]
) -> dict[str, Any] | None:
    if not isinstance(given, Mapping):
        problems.append(Problem(where, "must be a mapping of parameter to value"))
        return None
    found = len(problems)
    for name in sorted(set(given) - set(template.params)):
        known = ", ".join(sorted(template.params)) or "none"
        problems.append(
            Problem(f"{where}.{name}", f"{template.label} has no such parameter ({known})")
        )
    values = {}
    for name, param in template.params.items():
        if name not in given and param.required:
            problems.append(Problem(f"{where}.{name}", f"is required by {template.label}"))
        value = given.get(name, param.default)
        if name in given and not _fits(param, value):
            problems.append(Problem(f"{where}.{name}", f"must be a {param.type}, got {value!r}"))
        values[name] = value
    return values if len(problems) == found else None


def _fits(param: Param, value: Any) -> bool:
    if isinstance(value, bool) and param.type != "boolean":
        return False
    return isinstance(value, PARAM_TYPES[param.type])


def _sample(kind: str) -> Any:
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "list": [], "object": {}}[
        kind
    ]


def _substituted(value: Any, values: Mapping[str, Any]) -> Any:
    """`value` with `${param}` replaced; a string that is only a placeholder keeps the
    parameter's type."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), value)
    if isinstance(value, Mapping):
        return {k: _substituted(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, values) for v in value]
    return value


def _rename_at(step: dict[str, Any], path: tuple[str, ...], prefix: str, local: set[Any]) -> None:
    holder: Any = step
    for key in path[:-1]:
        holder = holder.get(key) if isinstance(holder, Mapping) else None
    if isinstance(holder, dict) and isinstance(holder.get(path[-1]), str):
        holder[path[-1]] = rename_steps(holder[path[-1]], prefix, local)


class _Renamer(ast.NodeTransformer):
    def __init__(self, prefix: str, local: set[Any]) -> None:
        self.prefix, self.local = prefix, local

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if (
            isinstance(node.value, ast.Name)
            and node.value.id == "steps"
            and node.attr in self.local
        ):
            key = ast.Constant(f"{self.prefix}.{node.attr}")
            return ast.copy_location(ast.Subscript(node.value, key, ast.Load()), node)
        return self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        key = node.slice
        if (
            isinstance(node.value, ast.Name)
            and node.value.id == "steps"
            and isinstance(key, ast.Constant)
            and key.value in self.local
        ):
            node.slice = ast.Constant(f"{self.prefix}.{key.value!s}")
            return node
        return self.generic_visit(node)


def rename_steps(text: str, prefix: str, local: set[Any]) -> str:
    """The expression with its reads of the template's steps made reads of the expanded
    ones (`steps.assign.x` -> `steps["blk.assign"].x`). Text that does not parse is left
    as it is, for validation to report."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return text
    return ast.unparse(_Renamer(prefix, local).visit(tree))


def used_templates(raw: Any) -> set[str]:
    """The template ids a raw workflow's `use:` steps name."""
    steps = raw.get("steps") if isinstance(raw, Mapping) else None
    return {
        str(step["use"]["template"])
        for step in steps or []
        if isinstance(step, Mapping)
        and isinstance(step.get("use"), Mapping)
        and isinstance(step["use"].get("template"), str)
    }


def workflow_from(
    template: Template, params: Mapping[str, Any], workflow_id: str, version: int = 1
) -> dict[str, Any]:
    """A workflow of its own made of the template's steps (`register --from-template`)."""
    problems: list[Problem] = []
    values = _params(template, params, "--param", problems)
    if values is None:
        raise InvalidDefinition(problems)
    steps = []
    for number, body in enumerate(template.steps):
        step = _substituted(body, values)
        step["from"] = f"{template.label} steps[{number}] ({body['id']})"
        steps.append(step)
    return {"id": workflow_id, "version": version, "steps": steps}


def traced(problems: list[Problem], expanded: Mapping[str, Any]) -> list[Problem]:
    """Problems of an expanded workflow, each one in an expanded step also located in
    its template and at its use site (the step's `from`)."""
    steps = expanded.get("steps") or []
    located = []
    for problem in problems:
        match = STEP_LOCATION.match(problem.location)
        index = int(match.group(1)) if match else -1
        source = steps[index].get("from") if 0 <= index < len(steps) else None
        if isinstance(source, str) and isinstance(steps[index], Mapping):
            problem = Problem(f"{problem.location} (from {source})", problem.message)
        located.append(problem)
    return located
