"""What running a flow over N candles costs, before it runs: the work budget of a request.

A backtest's cost is not its candle count: 500 indicator nodes over a year of minutes is 500 times
the work (and the memory) of one. The model charges every node for every candle:

* **time** — ``Σ node ns_per_candle × candles`` plus the simulation (:data:`SIMULATION`), from
  :data:`NODE_COSTS`, measured per indicator kind with ``benchmarks/indicator_cost.py`` on this
  machine class and rounded up. Indicators are O(n) whatever their period, so the period does not
  appear (:mod:`capandex.engine.indicators`).
* **memory** — the evaluation keeps every node's outputs until the signals are read, so
  ``(Σ node arrays + the largest node's scratch + the simulation's arrays) × candles × 8 bytes``.

:func:`check_budget` refuses a run whose memory estimate exceeds :data:`MAX_EVALUATION_BYTES` with a
422 naming the range and the nodes, so no request can take the engine Lambda (2 GB) down; the
time estimate sizes the in-request vs background decision (:mod:`capandex.backtests.service`).
"""

from __future__ import annotations

from dataclasses import dataclass

from capandex.engine.compiler import CompiledFlow
from capandex.errors import ValidationFailed, field_problem


@dataclass(frozen=True, slots=True)
class NodeCost:
    """One node kind per candle: nanoseconds to compute, float64 arrays it keeps (its outputs;
    booleans count 1/8), and the extra arrays it allocates while computing (freed after)."""

    ns_per_candle: float
    arrays: float
    scratch: float = 0.0


#: by indicator kind, or node type for the others; measured (benchmarks/indicator_cost.py) + headroom
NODE_COSTS: dict[str, NodeCost] = {
    "price": NodeCost(3, 1),
    "constant": NodeCost(2, 1),
    "condition": NodeCost(3, 0.125, 2),
    "logic": NodeCost(2, 0.125, 0.25),
    "sma": NodeCost(20, 1, 2),
    "ema": NodeCost(40, 1, 4),
    "wma": NodeCost(90, 1, 12),
    "rsi": NodeCost(120, 1, 12),
    "roc": NodeCost(25, 1, 2),
    "highest": NodeCost(45, 1, 6),
    "lowest": NodeCost(45, 1, 6),
    "bollinger": NodeCost(110, 3, 12),
    "macd": NodeCost(140, 3, 10),
    "atr": NodeCost(60, 1, 6),
    "stochastic": NodeCost(150, 2, 14),
    "obv": NodeCost(15, 1, 2),
    "vwap": NodeCost(45, 1, 4),
}
#: the simulation, metrics and equity curve after the signals (engine benchmark: 60 ns per candle)
SIMULATION = NodeCost(120, 8)
#: the most memory one evaluation may need (the engine Lambda has 2 GB; room for the candles,
#: the runtime and the result)
MAX_EVALUATION_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Work:
    """The estimate for one flow over ``candles`` candles: ``nodes`` charged, engine ``seconds``,
    peak evaluation ``bytes``."""

    nodes: int
    candles: int
    seconds: float
    bytes: int


def _cost(compiled: CompiledFlow, node_id: str) -> NodeCost | None:
    node = compiled.flow.nodes[node_id]
    return NODE_COSTS.get(node.kind if node.type == "indicator" else node.type)


def estimate(compiled: CompiledFlow, candles: int) -> Work:
    """The :class:`Work` of running ``compiled`` over ``candles`` candles (see the module doc)."""
    costs = [c for c in (_cost(compiled, node_id) for node_id in compiled.flow.order) if c is not None]
    ns = sum(c.ns_per_candle for c in costs) + SIMULATION.ns_per_candle
    arrays = sum(c.arrays for c in costs) + max((c.scratch for c in costs), default=0.0) + SIMULATION.arrays
    return Work(nodes=len(costs), candles=candles, seconds=ns * candles * 1e-9, bytes=int(arrays * candles * 8))


def check_budget(work: Work, *, range_field: str = "endDate") -> None:
    """:class:`ValidationFailed` (422) when ``work`` needs more than :data:`MAX_EVALUATION_BYTES`,
    naming the range (``range_field``) and the flow's ``nodes``: either can be cut."""
    if work.bytes <= MAX_EVALUATION_BYTES:
        return
    need, limit = work.bytes / 2**20, MAX_EVALUATION_BYTES / 2**20
    why = (f"{work.nodes} computing nodes over {work.candles:,} candles need about {need:,.0f} MiB to evaluate; "
           f"the limit is {limit:,.0f} MiB")
    raise ValidationFailed(f"The backtest is too large: {why}. Shorten the range or use fewer nodes.",
                           details=[field_problem(range_field, why + ": shorten the range"),
                                    field_problem("nodes", why + ": use fewer nodes")])
