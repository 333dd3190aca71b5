"""Example flows: the DESIGN.md §4 document, for notebooks, benchmarks and tests."""

from __future__ import annotations

from typing import Any

#: Node ids of the risk nodes, as in DESIGN.md §4's example (``sl``).
RISK_NODE_IDS = {"stop_loss": "sl", "take_profit": "tp", "trailing_stop": "ts", "kill_switch": "ks"}


def sma_cross(fast: int = 10, slow: int = 30, *risk: tuple[str, float], name: str = "SMA cross",
              settings: dict[str, Any] | None = None, **buy: float) -> dict[str, Any]:
    """Buy when SMA(``fast``) crosses above SMA(``slow``), sell when it crosses below.

    ``risk`` adds risk nodes as ``(kind, percent)`` pairs, e.g. ``("stop_loss", 2)``; ``buy``
    sets the buy action's sizing (``sizePercent=50``, ``amount=1000`` or ``riskPercent=1``);
    ``settings`` is the flow's settings block (exchange, symbol, timeframe, capital, costs).
    A new document on every call, so callers may change it.
    """
    nodes = [
        {"id": "fast", "type": "indicator", "data": {"kind": "sma", "period": fast}},
        {"id": "slow", "type": "indicator", "data": {"kind": "sma", "period": slow}},
        {"id": "up", "type": "condition", "data": {"operator": "crosses_above"}},
        {"id": "down", "type": "condition", "data": {"operator": "crosses_below"}},
        {"id": "buy", "type": "action", "data": {"action": "buy", **buy}},
        {"id": "sell", "type": "action", "data": {"action": "sell"}},
    ] + [{"id": RISK_NODE_IDS.get(kind, kind), "type": "risk", "data": {"kind": kind, "percent": percent}}
         for kind, percent in risk]
    edges = [
        {"id": "e1", "source": "fast", "target": "up", "targetHandle": "a"},
        {"id": "e2", "source": "slow", "target": "up", "targetHandle": "b"},
        {"id": "e3", "source": "fast", "target": "down", "targetHandle": "a"},
        {"id": "e4", "source": "slow", "target": "down", "targetHandle": "b"},
        {"id": "e5", "source": "up", "target": "buy"},
        {"id": "e6", "source": "down", "target": "sell"},
    ]
    document: dict[str, Any] = {"name": name, "nodes": nodes, "edges": edges}
    if settings is not None:
        document["settings"] = dict(settings)
    return document
