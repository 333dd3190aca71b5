"""Flow validation (DESIGN.md §4): a document in, a :class:`~capandex.engine.document.Flow` out.

:func:`validate_flow` checks a flow document against the node catalogue of
:mod:`capandex.engine.document` and returns a :class:`Flow` (nodes in evaluation order, risk
rules, buy/sell actions, settings). It never stops at the first problem: every problem is
collected as ``{"nodeId", "field", "message"}`` and raised together in one
:class:`~capandex.errors.ValidationFailed` (the API answers 422 with them as ``details``).
:func:`resolve_settings` merges a caller's capital, fee and slippage with the flow's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capandex.engine.document import (
    BOOLEAN,
    CONDITION_OPERATORS,
    DEFAULT_CAPITAL,
    DEFAULT_FEE,
    DEFAULT_SLIPPAGE,
    INDICATORS,
    LOGIC_OPERATORS,
    NUMERIC,
    PRICE_FIELDS,
    RISK_KINDS,
    RISK_PARAMS,
    SETTINGS_FIELDS,
    SIZING_FIELDS,
    SIZING_PARAMS,
    TRIGGER_KINDS,
    BuyAction,
    Flow,
    Node,
    Param,
    Risk,
    RunSettings,
    data_fields,
    input_handles,
    output_handles,
    output_type,
)
from capandex.engine.typos import misspelt_fields
from capandex.errors import ValidationFailed


class _Problems(list[dict[str, Any]]):
    def add(self, node_id: str | None, field_name: str, message: str) -> None:
        self.append({"nodeId": node_id, "field": field_name, "message": message})


def validate_flow(document: Mapping[str, Any]) -> Flow:
    """Check a flow document (DESIGN.md §4) and return it validated and ordered.

    Raises:
        ValidationFailed: with ``details`` listing every problem as
            ``{"nodeId": str | None, "field": str, "message": str}``.
    """
    problems = _Problems()
    if not isinstance(document, Mapping):
        problems.add(None, "flow", "must be a JSON object")
        _raise(problems)
    nodes = _parse_nodes(document.get("nodes"), problems)
    _parse_edges(document.get("edges", []), nodes, problems)
    order = _topological_order(nodes, problems)
    _check_inputs(nodes, problems)
    buys, sells, risk = _parse_actions_and_risk(nodes, problems)
    settings = _parse_settings(document.get("settings") or {}, problems)
    if problems:
        _raise(problems)
    return Flow(nodes=nodes, order=order, buys=buys, sells=sells, risk=risk, settings=settings,
                name=str(document.get("name", "")), document=dict(document))


def _raise(problems: _Problems) -> None:
    first = problems[0]
    where = f"node {first['nodeId']!r} " if first["nodeId"] else ""
    others = len(problems) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    raise ValidationFailed(f"invalid flow: {where}{first['field']}: {first['message']}{more}",
                           details=list(problems))


def _parse_nodes(raw: Any, problems: _Problems) -> dict[str, Node]:
    if not isinstance(raw, list) or not raw:
        problems.add(None, "nodes", "must be a non-empty list of nodes")
        return {}
    nodes: dict[str, Node] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
            problems.add(None, f"nodes[{index}].id", "every node needs a non-empty string id")
            continue
        node_id = item["id"]
        if node_id in nodes:
            problems.add(node_id, "id", "duplicate node id")
            continue
        data = item.get("data") or {}
        if not isinstance(data, Mapping):
            problems.add(node_id, "data", "must be an object")
            data = {}
        node = _parse_node(node_id, item.get("type"), data, problems)
        if node is not None:
            nodes[node_id] = node
            for given, meant in misspelt_fields(data, data_fields(node)):
                problems.add(node_id, f"data.{given}", f"not a field of this node; did you mean {meant}?")
    return nodes


@dataclass(frozen=True)
class _NodeData:
    """One node's ``data``, read field by field; each problem is added under the node's id."""

    node_id: str
    data: Mapping[str, Any]
    problems: _Problems

    def problem(self, field: str, message: str) -> None:
        self.problems.add(self.node_id, field, message)

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        """``data[name]`` when it is one of ``allowed``; None (and a problem) otherwise."""
        value = self.data.get(name, default)
        if value not in allowed:
            self.problem(f"data.{name}", f"must be one of {', '.join(allowed)} (got {value!r})")
            return None
        return str(value)

    def numbers(self, spec: Mapping[str, Param], only_given: bool = False) -> dict[str, Any]:
        """The parameters of ``spec``, defaults filled in (``only_given``: just those present);
        every missing or out-of-range one is a problem."""
        params = {}
        for name, param in spec.items():
            value = self.data.get(name, None if only_given else param.default)
            if value is None:
                if not only_given:
                    self.problem(f"data.{name}", "is required")
                continue
            why = param.check(value)
            if why:
                self.problem(f"data.{name}", why)
            params[name] = int(value) if param.integer and not why else value
        return params


def _parse_node(node_id: str, node_type: Any, data: Mapping[str, Any],
                problems: _Problems) -> Node | None:
    read = _NodeData(node_id, data, problems)
    if node_type == "price":
        kind = read.choice("field", PRICE_FIELDS)
        return Node(node_id, "price", kind or "close", {}, {}) if kind else None
    if node_type == "constant":
        return Node(node_id, "constant", "constant", read.numbers({"value": Param(False, None, -math.inf)}),
                    {})
    if node_type == "indicator":
        return _parse_indicator(read)
    if node_type == "condition":
        operator = read.choice("operator", CONDITION_OPERATORS)
        params = read.numbers({"value": Param(False, None, -math.inf)}, only_given=True)
        return Node(node_id, "condition", operator or ">", params, {})
    if node_type == "logic":
        operator = read.choice("operator", LOGIC_OPERATORS)
        return Node(node_id, "logic", operator or "and", {}, {})
    if node_type == "action":
        return _parse_action(read)
    if node_type == "risk":
        kind = read.choice("kind", RISK_KINDS)
        if kind is None:
            return None
        return Node(node_id, "risk", kind, read.numbers({"percent": RISK_PARAMS[kind]}), {})
    if node_type == "trigger":
        kind = read.choice("kind", TRIGGER_KINDS, "candle_close")
        return Node(node_id, "trigger", kind or "candle_close", {}, {})
    read.problem("type", f"unknown node type {node_type!r}; expected one of price, constant, "
                 "indicator, condition, logic, action, risk, trigger")
    return None


def _parse_indicator(read: _NodeData) -> Node | None:
    kind = read.choice("kind", tuple(INDICATORS))
    if kind is None:
        return None
    params = read.numbers(INDICATORS[kind].params)
    if kind == "macd" and isinstance(params.get("fast"), int) and isinstance(params.get("slow"), int) \
            and params["fast"] >= params["slow"]:
        read.problem("data.fast", "must be smaller than data.slow")
    default_source = "hlc3" if kind == "vwap" else "close"
    source = read.data.get("source", default_source)
    if source not in PRICE_FIELDS:
        read.problem("data.source", f"must be one of {', '.join(PRICE_FIELDS)}")
    return Node(read.node_id, "indicator", kind, {**params, "source": source}, {})


def _parse_action(read: _NodeData) -> Node:
    side = read.choice("action", ("buy", "sell"))
    given = [name for name in SIZING_FIELDS if read.data.get(name) is not None]
    if side == "sell" and given:
        read.problem(f"data.{given[0]}", "a sell closes the whole position; remove it")
    if len(given) > 1:
        read.problem("data", f"set only one of {', '.join(SIZING_FIELDS)}")
    params = read.numbers(SIZING_PARAMS, only_given=True) if side == "buy" else {}
    if side == "buy" and not given:
        params["sizePercent"] = 100.0
    return Node(read.node_id, "action", side or "buy", params, {})


def _pick_handle(handles: tuple[str, ...] | list[str], given: str | None) -> str | None:
    """The handle an edge names, or the node's only handle when it names none; None when the
    edge names a handle the node does not have."""
    if given is None and len(handles) == 1:
        return handles[0]
    return given if given in handles else None


def _parse_edges(raw: Any, nodes: dict[str, Node], problems: _Problems) -> None:
    if not isinstance(raw, list):
        problems.add(None, "edges", "must be a list")
        return
    for index, edge in enumerate(raw):
        label = f"edges[{index}]"
        if not isinstance(edge, Mapping):
            problems.add(None, label, "must be an object")
            continue
        edge_id = edge.get("id", label)
        # an id that is not a string (a list, an object) names no node (and is unhashable for dict.get)
        source_id, target_id = edge.get("source"), edge.get("target")
        source = nodes.get(source_id) if isinstance(source_id, str) else None
        target = nodes.get(target_id) if isinstance(target_id, str) else None
        for end, node in (("source", source), ("target", target)):
            if node is None:
                problems.add(edge.get(end) if isinstance(edge.get(end), str) else None,
                             f"edge {edge_id}.{end}", f"no node with id {edge.get(end)!r}")
        if source is None or target is None:
            continue
        out_handles = output_handles(source)
        if not out_handles:
            problems.add(source.id, f"edge {edge_id}.source", f"a {source.type} node has no outputs")
            continue
        source_handle = _pick_handle(out_handles, edge.get("sourceHandle"))
        if source_handle is None:
            problems.add(source.id, f"edge {edge_id}.sourceHandle",
                         f"must be one of {', '.join(out_handles)} (got {edge.get('sourceHandle')!r})")
            continue
        in_handles = input_handles(target)
        if in_handles is not None and not in_handles:
            problems.add(target.id, f"edge {edge_id}.target", f"this {target.type} node takes no inputs")
            continue
        target_handle = "in" if in_handles is None else _pick_handle(in_handles, edge.get("targetHandle"))
        if target_handle is None:
            problems.add(target.id, f"edge {edge_id}.targetHandle",
                         f"must be one of {', '.join(in_handles or ())} (got {edge.get('targetHandle')!r})")
            continue
        wires = target.inputs.setdefault(target_handle, [])
        if in_handles is not None and wires:
            problems.add(target.id, f"inputs.{target_handle}", "already has an incoming edge")
            continue
        wires.append((source.id, source_handle))


def _topological_order(nodes: dict[str, Node], problems: _Problems) -> tuple[str, ...]:
    pending = {node_id: {src for wires in node.inputs.values() for src, _ in wires}
               for node_id, node in nodes.items()}
    order: list[str] = []
    ready = [node_id for node_id, deps in pending.items() if not deps]
    while ready:
        current = ready.pop(0)
        order.append(current)
        del pending[current]
        for node_id, deps in pending.items():
            if current in deps:
                deps.discard(current)
                if not deps and node_id not in ready:
                    ready.append(node_id)
    for node_id in pending:
        problems.add(node_id, "inputs", "is part of a cycle")
    return tuple(order)


def _check_inputs(nodes: dict[str, Node], problems: _Problems) -> None:
    for node in nodes.values():
        expected = BOOLEAN if node.type in ("logic", "action") else NUMERIC
        for handle, wires in node.inputs.items():
            for source_id, _ in wires:
                got = output_type(nodes[source_id])
                if got != expected:
                    problems.add(node.id, f"inputs.{handle}",
                                 f"expects a {expected} input but {source_id!r} gives a {got} value")
        count = len(node.inputs.get("in", []))
        if node.type == "condition":
            if "a" not in node.inputs:
                problems.add(node.id, "inputs.a", "needs a numeric edge")
            if "b" not in node.inputs and "value" not in node.params:
                problems.add(node.id, "inputs.b", "needs a numeric edge or data.value")
        elif node.type == "logic" and node.kind == "not" and count != 1:
            problems.add(node.id, "inputs", f"'not' takes exactly one boolean edge (got {count})")
        elif node.type == "logic" and count == 0:
            problems.add(node.id, "inputs", "needs at least one boolean edge")
        elif node.type == "action" and count == 0:
            problems.add(node.id, "inputs", "needs a boolean edge (a condition) to fire it")


def _parse_actions_and_risk(nodes: dict[str, Node], problems: _Problems,
                            ) -> tuple[tuple[BuyAction, ...], tuple[str, ...], Risk]:
    buys, sells, risk = [], [], {}
    for node in nodes.values():
        if node.type == "risk":
            if node.kind in risk:
                problems.add(node.id, "kind", f"only one {node.kind} per flow")
            risk[node.kind] = node.params.get("percent")
        elif node.type == "action" and node.kind == "sell":
            sells.append(node.id)
        elif node.type == "action":
            p = node.params
            buys.append(BuyAction(node.id, p.get("sizePercent"), p.get("amount"), p.get("riskPercent")))
    if not buys:
        problems.add(None, "nodes", "the flow has no buy action, so it can never trade")
    for buy in buys:
        if buy.risk_percent is not None and "stop_loss" not in risk:
            problems.add(buy.node_id, "data.riskPercent", "needs a stop_loss risk node")
    return tuple(buys), tuple(sells), Risk(**{key: _num(value) for key, value in risk.items()})


def _num(value: Any) -> float | None:
    """``value`` as a float when it is a number a float can hold (an invalid one is already a
    problem; None keeps the flow buildable until the problems are raised)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _parse_settings(raw: Any, problems: _Problems) -> RunSettings:
    if not isinstance(raw, Mapping):
        problems.add(None, "settings", "must be an object")
        return RunSettings()
    specs = {"initialCapital": (DEFAULT_CAPITAL, Param(False, DEFAULT_CAPITAL, 0, math.inf, False)),
             "feeRate": (DEFAULT_FEE, Param(False, DEFAULT_FEE, 0, 0.5)),
             "slippage": (DEFAULT_SLIPPAGE, Param(False, DEFAULT_SLIPPAGE, 0, 0.5))}
    values: dict[str, float] = {}
    for name, (default, spec) in specs.items():
        value = raw.get(name)
        why = None if value is None else spec.check(value)
        if why:
            problems.add(None, f"settings.{name}", why)
        values[name] = default if value is None or why else float(value)
    for given, meant in misspelt_fields(raw, SETTINGS_FIELDS):
        problems.add(None, f"settings.{given}", f"not a setting; did you mean {meant}?")
    if raw.get("stopsOnExchange") is not None and not isinstance(raw["stopsOnExchange"], bool):
        # live executions only (capandex.live.protective); the engine checks its type like any setting
        problems.add(None, "settings.stopsOnExchange", "must be true or false")
    return RunSettings(values["initialCapital"], values["feeRate"], values["slippage"])


def resolve_settings(flow: Flow, capital: float | None, fee: float | None,
                     slippage: float | None) -> RunSettings:
    """Explicit arguments win, then the flow's settings, then §5's defaults; checks the ranges."""
    problems = _Problems()
    resolved = RunSettings(flow.settings.capital if capital is None else capital,
                        flow.settings.fee if fee is None else fee,
                        flow.settings.slippage if slippage is None else slippage)
    for name, value, spec in (("capital", resolved.capital, Param(False, None, 0, math.inf, False)),
                              ("fee", resolved.fee, Param(False, None, 0, 0.5)),
                              ("slippage", resolved.slippage, Param(False, None, 0, 0.5))):
        why = spec.check(value)
        if why:
            problems.add(None, name, why)
    if problems:
        _raise(problems)
    return RunSettings(float(resolved.capital), float(resolved.fee), float(resolved.slippage))
