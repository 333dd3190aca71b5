"""Compile a validated flow into a vectorised numpy evaluation over candle arrays.

:func:`compile_flow` returns a :class:`CompiledFlow`; ``signals(candles)`` evaluates every node in
topological order, once per node, and returns the buy/sell trigger of every bar (the value at bar
t uses bars 0..t only: the evaluation is causal, so no lookahead can enter through it).

Each node also gets a structural key (``CompiledFlow.keys``): its type, kind, parameters and the keys
of its inputs. Two nodes with equal keys compute equal arrays on the same candles, so a caller that
evaluates many variants of one flow over the same candles (parameter research) passes one
``cache`` mapping to :meth:`CompiledFlow.signals` and every distinct indicator is computed once.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from capandex.engine import indicators as ta
from capandex.engine.candles import Candles
from capandex.engine.document import Flow, Node
from capandex.engine.flow import validate_flow

#: the recursive indicators and their smoothing factor, for the live history length
_ALPHA = {"ema": lambda p: 2.0 / (p["period"] + 1), "rsi": lambda p: 1.0 / p["period"],
          "atr": lambda p: 1.0 / p["period"], "macd": lambda p: 2.0 / (max(p["fast"], p["slow"]) + 1)}


#: node outputs by structural key (see :meth:`CompiledFlow.evaluate`)
NodeCache = MutableMapping[Hashable, dict[str, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Signals:
    """Per-bar triggers at the close: ``buy``/``sell`` bool arrays; ``choice`` is the index in
    ``Flow.buys`` of the first buy action that fired (-1 where none did)."""

    buy: np.ndarray
    sell: np.ndarray
    choice: np.ndarray


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    """A flow ready to run.

    ``warmup`` is the first bar at which every node feeding an action can have a value.
    ``history`` is the number of trailing bars the live stepper should pass so that recursive
    indicators (EMA, RSI, ATR, MACD) agree with a full-history evaluation to ~1e-12 relative; it
    is None when the flow uses OBV (a running total since the first bar), which needs every bar
    since a fixed anchor.
    """

    flow: Flow
    warmup: int
    history: int | None
    keys: Mapping[str, Hashable] = field(default_factory=dict)

    def evaluate(self, candles: Candles, cache: NodeCache | None = None) -> dict[tuple[str, str], np.ndarray]:
        """Every node's outputs, keyed ``(node id, output handle)``.

        ``cache`` maps a node's structural key (:attr:`keys`) to its outputs on these same
        ``candles``: found keys are reused, computed ones offered to it (the mapping decides what it
        keeps). Never share one cache between different candles.
        """
        values: dict[tuple[str, str], np.ndarray] = {}
        for node_id in self.flow.order:
            node = self.flow.nodes[node_id]
            key = self.keys.get(node_id) if cache is not None else None
            outputs = cache.get(key) if cache is not None and key is not None else None
            if outputs is None:
                outputs = _evaluate_node(node, candles, values)
                if cache is not None and key is not None:
                    cache[key] = outputs
            for handle, array in outputs.items():
                values[(node_id, handle)] = array
        return values

    def signals(self, candles: Candles, cache: NodeCache | None = None) -> Signals:
        """Buy and sell triggers at every close of ``candles`` (all bars evaluated at once);
        ``cache`` as in :meth:`evaluate`."""
        values = self.evaluate(candles, cache)
        n = len(candles)

        def fired(node_id: str) -> np.ndarray:
            out = np.zeros(n, dtype=bool)
            for source, handle in self.flow.nodes[node_id].inputs.get("in", []):
                out |= values[(source, handle)]
            return out

        choice = np.full(n, -1, dtype=np.int64)
        for index in reversed(range(len(self.flow.buys))):  # first action in document order wins
            choice[fired(self.flow.buys[index].node_id)] = index
        sell = np.zeros(n, dtype=bool)
        for node_id in self.flow.sells:
            sell |= fired(node_id)
        return Signals(buy=choice >= 0, sell=sell, choice=choice)


def compile_flow(flow: Flow | Mapping[str, Any]) -> CompiledFlow:
    """Validate (if given a document) and compile a flow.

    Raises:
        ValidationFailed: the document breaks a rule of DESIGN.md §4 (all problems listed).
    """
    if not isinstance(flow, Flow):
        flow = validate_flow(flow)
    warmup: dict[str, int] = {}
    history: dict[str, int] = {}
    for node_id in flow.order:
        node = flow.nodes[node_id]
        upstream = [source for wires in node.inputs.values() for source, _ in wires]
        base = max((warmup[s] for s in upstream), default=0)
        base_history = max((history[s] for s in upstream), default=0)
        own = _lookback(node)
        if node.type == "condition" and node.kind.startswith("crosses"):
            own = 1
        warmup[node_id] = base + own
        converge = ta.convergence_bars(_ALPHA[node.kind](node.params)) if (
            node.type == "indicator" and node.kind in _ALPHA) else 0
        history[node_id] = base_history + own + converge
    actions = [b.node_id for b in flow.buys] + list(flow.sells)
    # OBV is a running total from the first bar: no trailing window reproduces it
    cumulative = any(node.type == "indicator" and node.kind == "obv" for node in flow.nodes.values())
    return CompiledFlow(flow=flow, warmup=max((warmup[a] for a in actions), default=0),
                        history=None if cumulative else max((history[a] for a in actions), default=0) + 2,
                        keys=node_keys(flow))


def node_keys(flow: Flow) -> dict[str, Hashable]:
    """A structural key per node: type, kind, parameters (with their Python types, so 2 and 2.0
    stay apart) and, per input handle, the keys and handles of its sources. Equal keys mean equal
    outputs on the same candles, whatever the node ids."""
    keys: dict[str, Hashable] = {}
    for node_id in flow.order:
        node = flow.nodes[node_id]
        params = tuple(sorted((name, type(value).__name__, value) for name, value in node.params.items()))
        inputs = tuple((handle, tuple((keys[source], out) for source, out in wires))
                       for handle, wires in sorted(node.inputs.items()))
        keys[node_id] = (node.type, node.kind, params, inputs)
    return keys


def _lookback(node: Node) -> int:
    """TA-Lib's lookback: the index of an indicator's first value on a clean input."""
    if node.type != "indicator":
        return 0
    p, kind = node.params, node.kind
    if kind in ("sma", "ema", "wma", "highest", "lowest", "vwap", "bollinger"):
        return int(p["period"]) - 1
    if kind in ("rsi", "roc", "atr"):
        return int(p["period"])
    if kind == "obv":
        return 0
    if kind == "macd":
        return int(max(p["fast"], p["slow"]) + p["signal"] - 2)
    if kind == "stochastic":
        return int(p["kPeriod"] + p["kSmooth"] + p["dPeriod"] - 3)
    raise ValueError(f"no lookback known for indicator {kind!r}")


def price_field(candles: Candles, name: str) -> np.ndarray:
    """A price series by name: open, high, low, close, volume, hl2, hlc3 or ohlc4."""
    if name == "hl2":
        return (candles.high + candles.low) / 2.0
    if name == "hlc3":
        return (candles.high + candles.low + candles.close) / 3.0
    if name == "ohlc4":
        return (candles.open + candles.high + candles.low + candles.close) / 4.0
    series: npt.NDArray[np.float64] = getattr(candles, name)
    return series


def _input(node: Node, handle: str, values: dict[tuple[str, str], np.ndarray]) -> np.ndarray | None:
    wires = node.inputs.get(handle)
    return values[wires[0]] if wires else None


def _evaluate_node(node: Node, candles: Candles,
                   values: dict[tuple[str, str], np.ndarray]) -> dict[str, np.ndarray]:
    n = len(candles)
    if node.type == "price":
        return {"value": price_field(candles, node.kind)}
    if node.type == "constant":
        return {"value": np.full(n, float(node.params["value"]))}
    if node.type == "indicator":
        return _indicator(node, candles, values)
    if node.type == "condition":
        a = _input(node, "a", values)
        b = _input(node, "b", values)
        if a is None:  # validation requires it
            raise ValueError(f"condition {node.id} has no input a")
        if b is None:
            b = np.full(n, float(node.params["value"]))
        return {"value": _compare(node.kind, a, b)}
    if node.type == "logic":
        inputs = [values[wire] for wire in node.inputs.get("in", [])]
        if node.kind == "not":
            return {"value": ~inputs[0]}
        reduce = np.logical_and if node.kind == "and" else np.logical_or
        return {"value": reduce.reduce(inputs)}
    return {}  # actions, risk and triggers carry no computation


def _compare(operator: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A comparison bar by bar; NaN on either side compares false (numpy's IEEE semantics)."""
    if operator == ">":
        return a > b
    if operator == "<":
        return a < b
    if operator == ">=":
        return a >= b
    if operator == "<=":
        return a <= b
    now = a > b if operator == "crosses_above" else a < b
    before = a <= b if operator == "crosses_above" else a >= b
    out = np.zeros(len(a), dtype=bool)
    out[1:] = now[1:] & before[:-1]
    return out


def _indicator(node: Node, candles: Candles,
               values: dict[tuple[str, str], np.ndarray]) -> dict[str, np.ndarray]:
    p = node.params
    source = _input(node, "source", values)
    x = price_field(candles, p["source"]) if source is None else source
    kind = node.kind
    if kind in ("sma", "ema", "wma", "rsi", "roc", "highest", "lowest"):
        return {"value": getattr(ta, kind)(x, p["period"])}
    if kind == "macd":
        return ta.macd(x, p["fast"], p["slow"], p["signal"])
    if kind == "bollinger":
        return ta.bollinger(x, p["period"], float(p["stddev"]))
    if kind == "atr":
        return {"value": ta.atr(candles.high, candles.low, candles.close, p["period"])}
    if kind == "stochastic":
        return ta.stochastic(candles.high, candles.low, candles.close, p["kPeriod"], p["kSmooth"],
                             p["dPeriod"])
    if kind == "obv":
        return {"value": ta.obv(x, candles.volume)}
    return {"value": ta.vwap(x, candles.volume, p["period"])}
