"""No lookahead, one code path: stepping candle by candle reproduces the backtest exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from capandex.engine import backtest, compile_flow, resolve_settings, run_stepper
from tests.capandex.engine.factories import random_walk

INDICATORS = [("sma", {"period": 3}), ("ema", {"period": 5}), ("wma", {"period": 4}), ("rsi", {"period": 6}),
              ("roc", {"period": 3}), ("highest", {"period": 5}), ("lowest", {"period": 4}),
              ("atr", {"period": 5}), ("vwap", {"period": 5}), ("obv", {})]
OPERATORS = [">", "<", ">=", "<=", "crosses_above", "crosses_below"]


@st.composite
def flows(draw) -> dict:
    """A random valid flow: two numeric sources per condition, 1-2 buy and 0-2 sell conditions,
    optional logic, random risk nodes and sizing."""
    nodes, edges = [{"id": "close", "type": "price", "data": {"field": "close"}}], []

    def numeric() -> str:
        node_id = f"n{len(nodes)}"
        if draw(st.booleans()):
            kind, params = draw(st.sampled_from(INDICATORS))
            nodes.append({"id": node_id, "type": "indicator", "data": {"kind": kind, **params}})
        else:
            field = draw(st.sampled_from(["close", "open", "hl2", "high", "low"]))
            nodes.append({"id": node_id, "type": "price", "data": {"field": field}})
        return node_id

    def condition() -> str:
        node_id = f"c{len(nodes)}"
        nodes.append({"id": node_id, "type": "condition",
                      "data": {"operator": draw(st.sampled_from(OPERATORS))}})
        edges.append({"id": f"e{len(edges)}", "source": numeric(), "target": node_id, "targetHandle": "a"})
        edges.append({"id": f"e{len(edges)}", "source": numeric(), "target": node_id, "targetHandle": "b"})
        return node_id

    def trigger() -> str:
        first = condition()
        if not draw(st.booleans()):
            return first
        node_id = f"l{len(nodes)}"
        operator = draw(st.sampled_from(["and", "or", "not"]))
        nodes.append({"id": node_id, "type": "logic", "data": {"operator": operator}})
        inputs = [first] if operator == "not" else [first, condition()]
        edges.extend({"id": f"e{len(edges)}", "source": s, "target": node_id} for s in inputs)
        return node_id

    risk = {}
    for kind, low, high in (("stop_loss", 0.5, 8), ("take_profit", 0.5, 10), ("trailing_stop", 0.5, 8),
                            ("kill_switch", 2, 30)):
        if draw(st.booleans()):
            risk[kind] = draw(st.floats(low, high))
            nodes.append({"id": kind, "type": "risk", "data": {"kind": kind, "percent": risk[kind]}})
    for side, count in (("buy", draw(st.integers(1, 2))), ("sell", draw(st.integers(0, 2)))):
        for i in range(count):
            data = {"action": side}
            if side == "buy":
                sizing = draw(st.sampled_from(["size", "amount", "risk"] if "stop_loss" in risk
                                              else ["size", "amount"]))
                data |= {"size": {"sizePercent": draw(st.floats(10, 100))},
                         "amount": {"amount": draw(st.floats(100, 20_000))},
                         "risk": {"riskPercent": draw(st.floats(0.5, 5))}}[sizing]
            nodes.append({"id": f"{side}{i}", "type": "action", "data": data})
            edges.append({"id": f"e{len(edges)}", "source": trigger(), "target": f"{side}{i}"})
    return {"nodes": nodes, "edges": edges}


def check_same(flow: dict, candles, window: int | None) -> None:
    compiled = compile_flow(flow)
    cfg = resolve_settings(compiled.flow, 10_000, 0.001, 0.0005)
    result = backtest(compiled, candles, fee=0.001, slippage=0.0005)
    trades, equity = run_stepper(compiled, candles, cfg, window=window)
    assert [t.to_dict() for t in trades] == result.trades
    if window is None:
        assert equity == result.equity.tolist()
    else:
        np.testing.assert_allclose(equity, result.equity, rtol=1e-9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows(), seed=st.integers(0, 10_000), n=st.integers(2, 120), vol=st.sampled_from([0.003, 0.02]))
def test_stepper_reproduces_backtest_exactly(flow, seed, n, vol):
    check_same(flow, random_walk(n, seed, vol=vol), window=None)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows(), seed=st.integers(0, 10_000))
def test_live_trailing_window_gives_the_same_trades(flow, seed):
    # the live engine passes only compiled.history candles: recursive indicators have converged
    history = compile_flow(flow).history
    assume(history is not None)  # OBV needs every bar since an anchor
    check_same(flow, random_walk(300, seed, vol=0.01), window=history)


def test_degenerate_constant_prices_and_single_candle():
    flow = {"nodes": [{"id": "p", "type": "price", "data": {"field": "close"}},
                      {"id": "c", "type": "condition", "data": {"operator": ">=", "value": 1}},
                      {"id": "b", "type": "action", "data": {"action": "buy"}}],
            "edges": [{"id": "1", "source": "p", "target": "c", "targetHandle": "a"},
                      {"id": "2", "source": "c", "target": "b"}]}
    flat = random_walk(5, 1)
    flat = type(flat).from_arrays(flat.time, *(np.full(5, 10.0) for _ in range(4)), np.ones(5))
    check_same(flow, flat, window=None)
    check_same(flow, flat.slice(0, 1), window=None)
