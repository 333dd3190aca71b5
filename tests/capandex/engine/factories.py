"""Candle and flow factories shared by the engine tests."""

from __future__ import annotations

import numpy as np

from capandex.engine import Candles
from capandex.engine.examples import sma_cross

HOUR_MS = 3_600_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def random_walk(n: int, seed: int = 0, *, step_ms: int = HOUR_MS, vol: float = 0.01) -> Candles:
    """Seeded OHLCV random walk with consistent bars (low <= open, close <= high)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, vol / 5, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol / 2, n)))
    return Candles.from_arrays(START_MS + np.arange(n, dtype=np.int64) * step_ms, open_, high, low, close,
                               rng.uniform(1, 100, n))


def bars(rows: list[tuple[float, float, float, float]], step_ms: int = HOUR_MS) -> Candles:
    """Candles from (open, high, low, close) tuples, volume 1, hourly from 2024-01-01."""
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return Candles.from_arrays(START_MS + np.arange(len(rows), dtype=np.int64) * step_ms, o, h, lo, c,
                               np.ones(len(rows)))


def sma_cross_flow(fast: int = 10, slow: int = 30, *risk: tuple[str, float], **buy: float) -> dict:
    """The DESIGN §4 example flow, with optional risk nodes and buy sizing."""
    return sma_cross(fast, slow, *risk, **buy)


def price_rule_flow(buy_above: float, sell_below: float | None = None, *risk: tuple[str, float],
                    **buy: float) -> dict:
    """Buy when close > ``buy_above``; sell when close < ``sell_below`` (if given)."""
    nodes = [
        {"id": "px", "type": "price", "data": {"field": "close"}},
        {"id": "hi", "type": "condition", "data": {"operator": ">", "value": buy_above}},
        {"id": "buy", "type": "action", "data": {"action": "buy", **buy}},
    ] + [{"id": kind, "type": "risk", "data": {"kind": kind, "percent": pct}} for kind, pct in risk]
    edges = [{"id": "e1", "source": "px", "target": "hi", "targetHandle": "a"},
             {"id": "e2", "source": "hi", "target": "buy"}]
    if sell_below is not None:
        nodes += [{"id": "lo", "type": "condition", "data": {"operator": "<", "value": sell_below}},
                  {"id": "sell", "type": "action", "data": {"action": "sell"}}]
        edges += [{"id": "e3", "source": "px", "target": "lo", "targetHandle": "a"},
                  {"id": "e4", "source": "lo", "target": "sell"}]
    return {"nodes": nodes, "edges": edges}
