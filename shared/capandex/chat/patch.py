"""Flow changes the assistant may propose: the ``propose_flow_change`` tool and its patch format.

The model calls the tool with a *patch*: a one-line ``summary`` and a list of ``ops``, applied in
order to a copy of the user's flow::

    {"summary": "Filter buys with RSI below 30",
     "ops": [
       {"op": "add_node", "node": {"id": "rsi", "type": "indicator", "data": {"kind": "rsi", "period": 14}}},
       {"op": "update_node", "id": "fast", "data": {"period": 12}},      # merged into data; null removes a key
       {"op": "remove_node", "id": "old"},                               # also removes its edges
       {"op": "add_edge", "edge": {"source": "rsi", "target": "low", "targetHandle": "a"}},
       {"op": "remove_edge", "id": "e5"},                                 # or {"source", "target"[, handles]}
       {"op": "update_settings", "settings": {"timeframe": "4h"}}        # merged; null removes a key
     ]}

Operations rather than a whole new document keep proposals small, reviewable as a list, and
unable to drop parts of the flow the model did not mean to touch (UI state such as node
positions survives). :func:`propose` applies the ops and runs the engine's validator on the
result; the client receives ``{"summary", "ops", "flow": {nodes, edges, settings}}`` only when
the resulting flow is valid. Nothing here writes to the database: the user applies a proposal.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from capandex.errors import ValidationFailed, field_problem
from capandex.flows.models import Edge, Node

TOOL_NAME = "propose_flow_change"
MAX_OPS = 100


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddNode(_Op):
    op: Literal["add_node"]
    node: Node


class UpdateNode(_Op):
    op: Literal["update_node"]
    id: str = Field(min_length=1)
    data: dict[str, Any]


class RemoveNode(_Op):
    op: Literal["remove_node"]
    id: str = Field(min_length=1)


class AddEdge(_Op):
    op: Literal["add_edge"]
    edge: Edge


class RemoveEdge(_Op):
    op: Literal["remove_edge"]
    id: str | None = None
    source: str | None = None
    target: str | None = None
    sourceHandle: str | None = None
    targetHandle: str | None = None


class UpdateSettings(_Op):
    op: Literal["update_settings"]
    settings: dict[str, Any]


Op = Annotated[AddNode | UpdateNode | RemoveNode | AddEdge | RemoveEdge | UpdateSettings,
               Field(discriminator="op")]
OP_NAMES = ("add_node", "update_node", "remove_node", "add_edge", "remove_edge", "update_settings")


class FlowPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=300)
    ops: list[Op] = Field(min_length=1, max_length=MAX_OPS)


_NODE_SCHEMA = {"type": "object", "required": ["id", "type", "data"],
                "properties": {"id": {"type": "string"}, "type": {"type": "string"},
                               "data": {"type": "object"}}}
_EDGE_SCHEMA = {"type": "object", "required": ["source", "target"],
                "properties": {k: {"type": "string"} for k in
                               ("id", "source", "target", "sourceHandle", "targetHandle")}}

#: The tool definition sent to Anthropic. Kept flat (one item shape with an ``op`` enum) because
#: models fill flat schemas more reliably than ``oneOf``; :class:`FlowPatch` checks each op exactly.
TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": (
        "Propose a change to the user's flow. The server applies the ops to a copy of the current "
        "flow, validates the result with the flow engine and shows it to the user, who decides "
        "whether to apply it; nothing is applied by calling this tool. Use it only when the user "
        "asks to build or change the flow. Ops, applied in order: add_node {node}; update_node "
        "{id, data} (merged into the node's data, null removes a key); remove_node {id} (its edges "
        "go too); add_edge {edge}; remove_edge {id} or {source, target, sourceHandle?, "
        "targetHandle?}; update_settings {settings} (merged, null removes a key)."),
    "input_schema": {
        "type": "object",
        "required": ["summary", "ops"],
        "properties": {
            "summary": {"type": "string", "description": "one sentence: what the change does"},
            "ops": {"type": "array", "minItems": 1, "maxItems": MAX_OPS, "items": {
                "type": "object", "required": ["op"],
                "properties": {
                    "op": {"type": "string", "enum": list(OP_NAMES)},
                    "id": {"type": "string", "description": "node id (update/remove_node) or edge id"},
                    "node": _NODE_SCHEMA, "edge": _EDGE_SCHEMA,
                    "data": {"type": "object"}, "settings": {"type": "object"},
                    **{k: {"type": "string"} for k in ("source", "target", "sourceHandle", "targetHandle")},
                }}},
        },
    },
}


def parse_patch(raw: Any) -> FlowPatch:
    """The tool input as a :class:`FlowPatch`; :class:`ValidationFailed` naming each bad field."""
    try:
        return FlowPatch.model_validate(raw)
    except ValidationError as exc:
        details = [field_problem(".".join(str(p) for p in e["loc"]) or "input", e["msg"])
                   for e in exc.errors(include_url=False)]
        raise ValidationFailed("the proposed change is malformed", details=details) from exc


def apply_patch(flow: Mapping[str, Any], patch: FlowPatch) -> dict[str, Any]:
    """A new flow document: ``flow`` (not modified) with ``patch``'s ops applied in order.

    Raises:
        ValidationFailed: an op names a node or edge that does not exist, or adds a duplicate id.
    """
    nodes = [dict(n) for n in copy.deepcopy(list(flow.get("nodes") or []))]
    edges = [dict(e) for e in copy.deepcopy(list(flow.get("edges") or []))]
    settings = dict(copy.deepcopy(flow.get("settings") or {}))
    problems: list[dict[str, Any]] = []
    for index, op in enumerate(patch.ops):
        where = f"ops.{index}"
        if isinstance(op, AddNode):
            if any(n.get("id") == op.node.id for n in nodes):
                problems.append(field_problem(f"{where}.node.id", f"node '{op.node.id}' already exists"))
            else:
                nodes.append(op.node.model_dump(exclude_none=True))
        elif isinstance(op, UpdateNode | RemoveNode):
            node = next((n for n in nodes if n.get("id") == op.id), None)
            if node is None:
                problems.append(field_problem(f"{where}.id", f"no node '{op.id}' in the flow"))
            elif isinstance(op, UpdateNode):
                node["data"] = _merge(node.get("data") or {}, op.data)
            else:
                nodes.remove(node)
                edges = [e for e in edges if op.id not in (e.get("source"), e.get("target"))]
        elif isinstance(op, AddEdge):
            edge = op.edge.model_dump(exclude_none=True)
            edge.setdefault("id", _edge_id(edge, edges))
            if any(e.get("id") == edge["id"] for e in edges):
                problems.append(field_problem(f"{where}.edge.id", f"edge '{edge['id']}' already exists"))
            else:
                edges.append(edge)
        elif isinstance(op, RemoveEdge):
            keep = [e for e in edges if not _edge_matches(e, op)]
            if len(keep) == len(edges):
                problems.append(field_problem(where, "no such edge in the flow"))
            edges = keep
        else:
            settings = _merge(settings, op.settings)
    if problems:
        raise ValidationFailed("the proposed change does not fit the current flow", details=problems)
    return {"nodes": nodes, "edges": edges, "settings": settings}


def propose(flow: Mapping[str, Any] | None, raw_input: Any) -> dict[str, Any]:
    """Parse, apply and validate a tool call; the ``flowPatch`` payload for the client.

    Raises:
        ValidationFailed: the input is malformed, does not fit the flow, or the resulting flow
            breaks a rule of the engine (``details`` lists every problem).
    """
    from capandex.engine import validate_flow  # the engine's one validator (lazy: keeps cold start small)

    patch = parse_patch(raw_input)
    result = apply_patch(flow or {}, patch)
    validate_flow({**result, "name": (flow or {}).get("name", "")})
    return {"summary": patch.summary, "ops": [op.model_dump(exclude_none=True) for op in patch.ops],
            "flow": result}


def _merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _edge_matches(edge: Mapping[str, Any], op: RemoveEdge) -> bool:
    if op.id is not None:
        return edge.get("id") == op.id
    if op.source is None or op.target is None:
        return False
    return (edge.get("source"), edge.get("target")) == (op.source, op.target) and all(
        getattr(op, h) is None or edge.get(h) == getattr(op, h) for h in ("sourceHandle", "targetHandle"))


def _edge_id(edge: Mapping[str, Any], edges: list[dict[str, Any]]) -> str:
    base = f"e-{edge['source']}-{edge['target']}" + (f"-{edge['targetHandle']}" if edge.get("targetHandle") else "")
    taken = {e.get("id") for e in edges}
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate
