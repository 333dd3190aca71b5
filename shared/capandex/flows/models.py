"""The flow document at the API edge (DESIGN.md §4).

Saving checks the document's shape only (ids, node types present, edges naming nodes as
strings): the dashboard saves drafts that cannot trade yet. Whether a flow can run is decided by
the engine's validator when it is backtested or started.
Nodes and edges keep extra keys because the node editor stores its own UI state on them
(``position``, ``width``, ``selected`` …); the request bodies around them reject unknown fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from capandex.models import RequestModel, ResponseModel, schema_examples

MAX_NODES = 500
MAX_EDGES = 2000


class Node(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=100)
    type: str = Field(min_length=1, max_length=50)
    data: dict[str, Any] = Field(default_factory=dict)


class Edge(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, max_length=100)
    source: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=1, max_length=100)
    sourceHandle: str | None = Field(default=None, max_length=100)
    targetHandle: str | None = Field(default=None, max_length=100)


class FlowSettings(BaseModel):
    """Where and how the flow trades; unknown keys are kept for forward compatibility."""

    model_config = ConfigDict(extra="allow")

    exchange: str | None = Field(default=None, max_length=32)
    symbol: str | None = Field(default=None, max_length=64)
    timeframe: str | None = Field(default=None, max_length=8)
    initialCapital: float | None = Field(default=None, gt=0)
    feeRate: float | None = Field(default=None, ge=0, lt=1)
    slippage: float | None = Field(default=None, ge=0, lt=1)


class FlowBody(RequestModel):
    """The editable part of a flow."""

    nodes: list[Node] = Field(default_factory=list, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list, max_length=MAX_EDGES)
    settings: FlowSettings = Field(default_factory=FlowSettings)

    @field_validator("nodes")
    @classmethod
    def _unique_node_ids(cls, nodes: list[Node]) -> list[Node]:
        seen: set[str] = set()
        for node in nodes:
            if node.id in seen:
                raise ValueError(f"node id '{node.id}' is used twice")
            seen.add(node.id)
        return nodes


def _example_flow() -> dict[str, Any]:
    from capandex.engine.examples import sma_cross

    settings = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "initialCapital": 10000,
                "feeRate": 0.001, "slippage": 0.001}
    return sma_cross(10, 30, ("stop_loss", 2), settings=settings)


class FlowCreate(FlowBody):
    model_config = ConfigDict(json_schema_extra=schema_examples(_example_flow))

    name: str = Field(min_length=1, max_length=200)


class FlowUpdate(RequestModel):
    """A partial update: only the fields sent change."""

    model_config = ConfigDict(json_schema_extra=schema_examples(
        lambda: {"name": "SMA cross (4h)", "settings": {"exchange": "binance", "symbol": "BTC/USDT",
                                                       "timeframe": "4h"}}))

    name: str | None = Field(default=None, min_length=1, max_length=200)
    nodes: list[Node] | None = Field(default=None, max_length=MAX_NODES)
    edges: list[Edge] | None = Field(default=None, max_length=MAX_EDGES)
    settings: FlowSettings | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> FlowUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one of name, nodes, edges, settings")
        return self


class FlowPublic(ResponseModel):
    id: str
    name: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    settings: dict[str, Any]
    created_at: str
    updated_at: str


class FlowSummary(ResponseModel):
    id: str
    name: str
    exchange: str | None
    symbol: str | None
    timeframe: str | None
    node_count: int
    edge_count: int
    created_at: str
    updated_at: str


class FlowsPublic(ResponseModel):
    flows: list[FlowSummary]


class VersionCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: {"description": "Tighter stop-loss"}))

    description: str | None = Field(default=None, max_length=500)


class VersionPublic(ResponseModel):
    id: str
    flow_id: str
    version: int
    change_description: str | None
    node_count: int
    edge_count: int
    created_at: str


class VersionCreated(ResponseModel):
    id: str
    flow_id: str
    version: int
    change_description: str | None
    created_at: str


class VersionsPublic(ResponseModel):
    versions: list[VersionPublic]


class Restored(ResponseModel):
    restored: bool
    version: int
