"""Time and memory of every indicator per candle: the measurements behind ``capandex.engine.cost``.

    .venv/bin/python benchmarks/indicator_cost.py [--candles 1000000]

For each indicator kind at a short and a long period, over a seeded BTC-like series of 1m closes:
the best of 3 wall times (ns per candle) and the peak memory the call allocates (tracemalloc, in
float64 arrays of the series' length). ``capandex.engine.cost.NODE_COSTS`` must stay at or above
these (a test checks the memory column against tracemalloc on a smaller series).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from capandex.engine.candles import Candles
from capandex.engine.compiler import compile_flow
from capandex.engine.cost import NODE_COSTS


def series(n: int) -> Candles:
    rng = np.random.default_rng(1)
    close = np.round(40_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)
    high, low = close * 1.001, close * 0.999
    return Candles.from_arrays(np.arange(n, dtype=np.int64) * 60_000, close, high, low, close, rng.uniform(1, 9, n))


def one_node(kind: str, params: dict) -> dict:
    return {"nodes": [{"id": "i", "type": "indicator", "data": {"kind": kind, **params}},
                      {"id": "c", "type": "condition", "data": {"operator": ">", "value": 0}},
                      {"id": "b", "type": "action", "data": {"action": "buy"}}],
            "edges": [{"id": "e1", "source": "i", "sourceHandle": OUTPUT.get(kind, "value"), "target": "c",
                       "targetHandle": "a"}, {"id": "e2", "source": "c", "target": "b"}]}


OUTPUT = {"macd": "macd", "bollinger": "upper", "stochastic": "k"}


def params_for(kind: str, long: bool) -> dict:
    p = 20_000 if long else 20
    return {"macd": {"fast": p // 2, "slow": p, "signal": 9}, "stochastic": {"kPeriod": p, "kSmooth": 3, "dPeriod": 3},
            "obv": {}, "bollinger": {"period": p, "stddev": 2}}.get(kind, {"period": p})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=1_000_000)
    n = parser.parse_args().candles
    candles = series(n)
    print(f"{n:,} candles; ns per candle (best of 3) and peak allocation in float64 arrays of n")
    print(f"{'kind':<11} {'period':>7} {'ns/candle':>10} {'arrays':>7}   model: ns {'arrays':>7}")
    for kind in NODE_COSTS:
        if kind in ("price", "constant", "condition", "logic"):
            continue
        for long in (False, True):
            if kind == "obv" and long:
                continue
            compiled = compile_flow(one_node(kind, params_for(kind, long)))
            node = compiled.flow.nodes["i"]
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                compiled.evaluate(candles)
                best = min(best, time.perf_counter() - started)
            tracemalloc.start()
            compiled.evaluate(candles)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            model = NODE_COSTS[kind]
            period = node.params.get("period", node.params.get("slow", node.params.get("kPeriod", "-")))
            print(f"{kind:<11} {period!s:>7} {best / n * 1e9:>10.1f} {peak / (8 * n):>7.1f}   "
                  f"      {model.ns_per_candle:>4.0f} {model.arrays:>7.1f}")


if __name__ == "__main__":
    main()
