"""The search space of an optimisation: which node parameters vary, over which values (DESIGN.md §8).

A space is a JSON object whose keys name parameters as ``NODE_ID.FIELD`` (split at the *last* dot,
so node ids may contain dots) and whose values give the candidates, either explicitly or as an
inclusive range::

    {"fast.period": {"min": 5, "max": 100, "step": 5},
     "slow.period": {"values": [20, 50, 100, 200]},
     "sl.percent":  {"min": 0.5, "max": 3, "step": 0.5},
     "where": ["fast.period < slow.period"]}

``where`` (optional; a parameter name always has a dot, so the key cannot clash) lists relations
``LEFT OP RIGHT`` with OP one of ``< <= > >= == !=`` and each side a parameter name or a number; a
combination is in the space when every relation holds. ``step`` defaults to 1 for whole-number
fields and is required for real ones. Range values are ``min + k * step`` rounded to 12
significant digits (so ``0.1`` steps give 0.3, not 0.30000000000000004).

:func:`parse_space` checks the space against the flow and raises one
:class:`~capandex.errors.ValidationFailed` listing every problem (unknown node or field, a field
that is not numeric, a value the node would refuse, a range with no values, more than
:data:`MAX_COMBINATIONS` combinations, a relation naming an unknown parameter).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from capandex.engine.document import INDICATORS, RISK_PARAMS, SIZING_PARAMS, Flow, Node, Param
from capandex.errors import ValidationFailed, field_problem

Number = int | float
Params = dict[str, Number]

#: the most combinations (the product of every parameter's candidates) a space may have
MAX_COMBINATIONS = 100_000
#: the most parameters, candidates per parameter and relations a space may have
MAX_PARAMETERS, MAX_VALUES, MAX_RELATIONS = 10, 10_000, 20
_ANY_NUMBER = Param(False, None, -math.inf)
_RELATION = re.compile(r"^\s*(\S+)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
    "!=": operator.ne}


@dataclass(frozen=True, slots=True)
class Parameter:
    """One varying node parameter: ``name`` is ``NODE_ID.FIELD``; ``values`` its candidates in
    order (ints for whole-number fields); ``ordered`` is True for a ``min``/``max``/``step`` range
    (a sampler may treat neighbours as similar), False for explicit ``values``; ``source`` is the
    spec as given."""

    name: str
    node_id: str
    field: str
    values: tuple[Number, ...]
    ordered: bool
    source: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)  # the spec as given, for to_json


@dataclass(frozen=True, slots=True)
class Relation:
    """``left op right``; each side a parameter name or a number."""

    left: str | float
    op: str
    right: str | float

    def holds(self, params: Mapping[str, Number]) -> bool:
        left = params[self.left] if isinstance(self.left, str) else self.left
        right = params[self.right] if isinstance(self.right, str) else self.right
        return _OPERATORS[self.op](left, right)

    def __str__(self) -> str:
        return f"{_fmt(self.left)} {self.op} {_fmt(self.right)}"


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """Validated parameters and relations; :meth:`combinations` enumerates the space lazily."""

    parameters: tuple[Parameter, ...]
    relations: tuple[Relation, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def whole(self) -> tuple[bool, ...]:
        """Per parameter: True when every candidate is a whole number (an int)."""
        return tuple(all(isinstance(v, int) for v in p.values) for p in self.parameters)

    @property
    def size(self) -> int:
        """Combinations before the relations are applied (the number :func:`parse_space` caps)."""
        return math.prod(len(p.values) for p in self.parameters)

    def allows(self, params: Mapping[str, Number]) -> bool:
        """True when every relation holds for ``params``."""
        return all(relation.holds(params) for relation in self.relations)

    def combinations(self) -> Iterator[Params]:
        """Every combination satisfying the relations, in grid order (the last parameter varies
        fastest), as ``{name: value}``."""
        names = self.names
        for values in itertools.product(*(p.values for p in self.parameters)):
            params = dict(zip(names, values, strict=True))
            if self.allows(params):
                yield params

    def to_json(self) -> dict[str, Any]:
        """The space as :func:`parse_space` accepts it (each parameter as given; ``where`` when set)."""
        out: dict[str, Any] = {p.name: dict(p.source) or {"values": list(p.values)} for p in self.parameters}
        if self.relations:
            out["where"] = [str(r) for r in self.relations]
        return out


def split_name(name: str) -> tuple[str, str]:
    """``"NODE_ID.FIELD"`` → ``("NODE_ID", "FIELD")``, split at the last dot."""
    node_id, _, field = name.rpartition(".")
    return node_id, field


def apply_params(document: Mapping[str, Any], params: Mapping[str, Number]) -> dict[str, Any]:
    """A copy of the flow ``document`` with ``data[FIELD] = value`` on each named node.

    The input is not modified; node objects that change are copied, the others shared.
    """
    by_node: dict[str, dict[str, Number]] = {}
    for name, value in params.items():
        node_id, field = split_name(name)
        by_node.setdefault(node_id, {})[field] = value
    out = dict(document)
    nodes = []
    for node in document.get("nodes", []):
        changes = by_node.get(str(node.get("id"))) if isinstance(node, Mapping) else None
        if changes:
            node = {**node, "data": {**(node.get("data") or {}), **changes}}
        nodes.append(node)
    out["nodes"] = nodes
    return out


def parse_space(raw: Any, flow: Flow, *, field: str = "space") -> SearchSpace:
    """Validate a space (see the module docstring) against a validated flow.

    Raises:
        ValidationFailed: every problem at once, each as ``{"field": "space.<name>…", "message"}``.
    """
    problems: list[dict[str, Any]] = []
    if not isinstance(raw, Mapping) or not raw:
        raise ValidationFailed(f"{field} must be an object naming at least one parameter.",
                               details=[field_problem(field, "must name at least one NODE_ID.FIELD")])
    named = [(name, spec) for name, spec in raw.items() if name != "where"]
    if not named:
        problems.append(field_problem(field, "must name at least one NODE_ID.FIELD"))
    if len(named) > MAX_PARAMETERS:
        problems.append(field_problem(field, f"at most {MAX_PARAMETERS} parameters"))
    parameters = []
    for name, spec in named[:MAX_PARAMETERS]:
        parameter = _parameter(str(name), spec, flow, f"{field}.{name}", problems)
        if parameter is not None:
            parameters.append(parameter)
    relations = _relations(raw.get("where"), {str(name) for name, _ in named}, f"{field}.where", problems)
    space = SearchSpace(tuple(parameters), tuple(relations))
    if len(parameters) == len(named) and space.size > MAX_COMBINATIONS:
        problems.append(field_problem(field, f"has {space.size:,} combinations; at most {MAX_COMBINATIONS:,} "
                                             "(narrow a range or raise a step)"))
    raise_problems("search space", problems)
    return space


def raise_problems(what: str, problems: list[dict[str, Any]]) -> None:
    """Raise one :class:`ValidationFailed` listing every problem (no-op when there are none)."""
    if problems:
        shown = "; ".join(f"{p['field']} {p['message']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationFailed(f"Invalid {what}: {shown}{more}.", details=problems)


def numeric_spec(node: Node, field: str) -> Param | str:
    """The :class:`Param` a node's ``field`` must satisfy, or why that field cannot vary."""
    if node.type == "indicator":
        spec = INDICATORS[node.kind].params.get(field)
        if spec is None:
            numeric = ", ".join(INDICATORS[node.kind].params) or "none"
            return f"is not a numeric parameter of a {node.kind} indicator (numeric: {numeric})"
        return spec
    if node.type == "risk":
        return RISK_PARAMS[node.kind] if field == "percent" else "a risk node's only numeric field is percent"
    if node.type == "action" and node.kind == "buy":
        sizing = next(name for name in SIZING_PARAMS if name in node.params)
        return SIZING_PARAMS[field] if field == sizing else f"this buy sizes by {sizing}; only it can vary"
    if node.type == "constant":
        return _ANY_NUMBER if field == "value" else "a constant's only numeric field is value"
    if node.type == "condition":
        if field != "value":
            return "a condition's only numeric field is value"
        return "has no effect: input b is wired" if "b" in node.inputs else _ANY_NUMBER
    return f"a {node.type} node has no numeric parameters"


def _parameter(name: str, spec: Any, flow: Flow, where: str, problems: list[dict[str, Any]]) -> Parameter | None:
    node_id, field = split_name(name)
    if not node_id or not field:
        problems.append(field_problem(where, "must be NODE_ID.FIELD"))
        return None
    node = flow.nodes.get(node_id)
    if node is None:
        problems.append(field_problem(where, f"no node with id {node_id!r}"))
        return None
    rule = numeric_spec(node, field)
    if isinstance(rule, str):
        problems.append(field_problem(where, rule))
        return None
    values = _candidates(spec, rule, where, problems)
    if values is None:
        return None
    bad = [(value, why) for value in values if (why := rule.check(value))]
    if bad:
        shown = ", ".join(_fmt(v) for v, _ in bad[:3]) + (", …" if len(bad) > 3 else "")
        problems.append(field_problem(where, f"{len(bad)} value(s) the node refuses ({shown}): {bad[0][1]}"))
        return None
    if rule.integer:
        values = [int(v) for v in values]
    return Parameter(name, node_id, field, tuple(values), ordered="values" not in spec, source=dict(spec))


def _candidates(spec: Any, rule: Param, where: str, problems: list[dict[str, Any]]) -> list[Number] | None:
    """The candidate values of one parameter spec, or None (with a problem added)."""
    if not isinstance(spec, Mapping):
        problems.append(field_problem(where, 'must be {"values": [...]} or {"min", "max", "step"}'))
        return None
    if "values" in spec:
        extra = sorted(set(spec) - {"values"})
        values = spec["values"]
        if extra:
            problems.append(field_problem(where, f"give values or min/max/step, not both ({', '.join(extra)})"))
        elif not isinstance(values, list) or not values:
            problems.append(field_problem(where + ".values", "must be a non-empty list of numbers"))
        elif not all(_is_number(v) for v in values):
            problems.append(field_problem(where + ".values", "must hold only finite numbers"))
        elif len(values) > MAX_VALUES:
            problems.append(field_problem(where + ".values", f"at most {MAX_VALUES:,} values"))
        elif len(set(values)) != len(values):
            problems.append(field_problem(where + ".values", "must not repeat a value"))
        else:
            return list(values)
        return None
    unknown = sorted(set(spec) - {"min", "max", "step"})
    if unknown:
        problems.append(field_problem(where, f"unknown key(s) {', '.join(unknown)}; use values or min/max/step"))
        return None
    low, high, step = spec.get("min"), spec.get("max"), spec.get("step", 1 if rule.integer else None)
    for key, value in (("min", low), ("max", high), ("step", step)):
        if not _is_number(value):
            problems.append(field_problem(f"{where}.{key}", "is required (a finite number)"
                                          if value is None else "must be a finite number"))
            return None
    assert low is not None and high is not None and step is not None  # checked just above
    if step <= 0:
        problems.append(field_problem(f"{where}.step", "must be positive"))
        return None
    if low > high:
        problems.append(field_problem(where, f"has no values: min {_fmt(low)} is above max {_fmt(high)}"))
        return None
    steps = (high - low) / step * (1 + 1e-12)
    count = math.floor(steps) + 1 if math.isfinite(steps) and steps < MAX_VALUES else MAX_VALUES + 1
    if count > MAX_VALUES:
        problems.append(field_problem(where, f"has more than {MAX_VALUES:,} values (raise step)"))
        return None
    if all(isinstance(v, int) for v in (low, high, step)):
        return list(range(low, low + count * step, step))
    return [float(f"{low + k * step:.12g}") for k in range(count)]


def _relations(raw: Any, names: set[str], where: str, problems: list[dict[str, Any]]) -> list[Relation]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        problems.append(field_problem(where, 'must be a list of relations such as "fast.period < slow.period"'))
        return []
    if len(raw) > MAX_RELATIONS:
        problems.append(field_problem(where, f"at most {MAX_RELATIONS} relations"))
        return []
    out = []
    for index, text in enumerate(raw):
        match = _RELATION.match(text)
        if match is None:
            problems.append(field_problem(f"{where}[{index}]", "must be LEFT OP RIGHT with OP one of "
                                                                "<, <=, >, >=, ==, !="))
            continue
        sides: list[str | float] = []
        known = True
        for side in (match.group(1), match.group(3)):
            number = _number(side)
            if number is None and side not in names:
                problems.append(field_problem(f"{where}[{index}]", f"names {side!r}, which is not a parameter "
                                                                    "of the space"))
                known = False
            sides.append(side if number is None else number)
        if not any(isinstance(side, str) for side in sides):
            problems.append(field_problem(f"{where}[{index}]", "compares two numbers; name a parameter"))
        elif known:
            out.append(Relation(sides[0], match.group(2), sides[1]))
    return out


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON may carry ints too large for a float: not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)

