"""Capandex engine vs vectorbt vs backtesting.py: one run each on the same 1,000,000 candles.

SMA(10)/SMA(30) cross with a 2 % stop-loss, no fees or slippage, next-open fills, all-in sizing.
Timed: the whole run (compile, indicators, simulation, metrics, equity). vectorbt is warmed up
first (numba compilation excluded); peak memory of our run via tracemalloc.

Run:  .venv/bin/pip install vectorbt   # the `bench` extra
      .venv/bin/python benchmarks/engine_vs_peers.py [--candles 1000000] [--skip-backtesting-py]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np
from harness import random_walk

from capandex.engine import backtest
from capandex.engine.examples import sma_cross

FLOW = sma_cross(10, 30, ("stop_loss", 2), sizePercent=100)


def candles(n: int, seed: int = 42) -> dict[str, np.ndarray]:
    """Seeded one-minute random walk (0.1 % per minute) with consistent OHLC."""
    return random_walk(n, step_ms=60_000, close_sd=0.001, open_sd=0.0002, wick_sd=0.0005, seed=seed)


REPEATS = 5  # best of N for the fast engines (timeit's convention: the minimum is the least noisy)


def best_of(run, repeats: int = REPEATS) -> tuple[float, object]:
    """The fastest of ``repeats`` timed calls of ``run()`` and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_capandex(data, repeats: int = REPEATS):
    seconds, result = best_of(lambda: backtest(FLOW, data, fee=0, slippage=0), repeats)
    return seconds, result.metrics["totalTrades"], result


def run_vectorbt(data):
    import pandas as pd
    import vectorbt as vbt

    index = pd.to_datetime(data["time"], unit="ms")
    close, open_ = pd.Series(data["close"], index), pd.Series(data["open"], index)
    high, low = pd.Series(data["high"], index), pd.Series(data["low"], index)

    def once(c, o, h, lo):
        fast, slow = vbt.MA.run(c, 10), vbt.MA.run(c, 30)
        entries, exits = fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
        # signal at close t -> fill at open t+1 (vectorbt's documented way: shift signals, price=open)
        pf = vbt.Portfolio.from_signals(c, entries.vbt.fshift(1, fill_value=False),
                                        exits.vbt.fshift(1, fill_value=False), price=o, open=o, high=h,
                                        low=lo, sl_stop=0.02, init_cash=10_000, fees=0, freq="1min")
        return pf.total_return(), pf.trades.count(), pf.value()

    n = 2000
    once(close[:n], open_[:n], high[:n], low[:n])  # warm up numba
    seconds, (_, count, _) = best_of(lambda: once(close, open_, high, low))
    return seconds, int(count)


def run_backtesting_py(data):
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    frame = pd.DataFrame({"Open": data["open"], "High": data["high"], "Low": data["low"], "Close": data["close"],
                          "Volume": data["volume"]}, index=pd.to_datetime(data["time"], unit="ms"))

    class SmaCross(Strategy):
        def init(self):
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 30)

        def next(self):
            if crossover(self.fast, self.slow) and not self.position:
                self.buy(sl=self.data.Close[-1] * 0.98)  # approximate: their stop is set before the fill
            elif crossover(self.slow, self.fast) and self.position:
                self.position.close()

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(frame, SmaCross, cash=1e9, commission=0).run()
    return time.perf_counter() - start, int(stats["# Trades"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--skip-backtesting-py", action="store_true")
    args = parser.parse_args()
    data = candles(args.candles)
    run_capandex(candles(5000), repeats=1)  # import/first-call costs out of the way, as for vectorbt
    seconds, trades, _ = run_capandex(data)
    tracemalloc.start()
    run_capandex(data, repeats=1)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"candles: {args.candles:,}  (capandex and vectorbt: best of {REPEATS}; backtesting.py: one run)")
    print(f"capandex        {seconds:8.3f} s   trades {trades:>7,}   peak memory {peak:,.0f} MiB (tracemalloc)")
    try:
        vbt_seconds, vbt_trades = run_vectorbt(data)
        print(f"vectorbt        {vbt_seconds:8.3f} s   trades {vbt_trades:>7,}   "
              f"capandex is {vbt_seconds / seconds:.1f}x faster")
    except ImportError:
        print("vectorbt        not installed (.venv/bin/pip install vectorbt)")
    if not args.skip_backtesting_py:
        bt_seconds, bt_trades = run_backtesting_py(data)
        print(f"backtesting.py  {bt_seconds:8.3f} s   trades {bt_trades:>7,}   "
              f"capandex is {bt_seconds / seconds:.0f}x faster")


if __name__ == "__main__":
    main()
