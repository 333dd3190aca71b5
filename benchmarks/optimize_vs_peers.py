"""Parameter optimisation: Capandex vs vectorbt vs backtesting.py on the same grid and candles.

A 20 × 20 grid of SMA(fast) × SMA(slow) cross strategies (fast 5..100 step 5, slow 10..200 step 10)
over 100,000 one-hour candles (seeded random walk), next-open fills, a 2 % stop-loss, fee and
slippage 0.1 % per side; timed from the candles to the metrics of every combination.

* capandex: the research batch engine, one process — the same study, batches and
  :class:`~capandex.research.batch.TrialRunner` the API and the CLI run (``optimize()`` adds the
  winner's tests; its time is printed too).
* vectorbt: the 400 columns broadcast in one ``Portfolio.from_signals`` (signals shifted one bar,
  ``price=open``, ``sl_stop=0.02``), numba warmed up first on 2,000 candles; metrics: total
  return, Sharpe ratio, max drawdown and trade count of every column.
* backtesting.py: ``Backtest.optimize`` (its default process pool) over a slice of the grid
  (every 10th combination unless ``--bt-full``), its per-combination time scaled to 400; its stop
  is set from the signal bar's close (it places the order before the fill price is known).

Each side runs in its own child process, so its peak resident memory (``ru_maxrss`` from
``os.wait4``) is its own; each side is run ``--repeat`` times and min / median / max reported.

Run:  .venv/bin/pip install vectorbt          # the `bench` extra
      .venv/bin/python benchmarks/optimize_vs_peers.py [--repeat 3] [--bt-full] [--skip-backtesting-py]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
from harness import random_walk

N_CANDLES = 100_000
FAST, SLOW = list(range(5, 101, 5)), list(range(10, 201, 10))
GRID = [(f, s) for f in FAST for s in SLOW]
FEE = SLIPPAGE = 0.001
STOP = 0.02
CAPITAL = 10_000.0


def candles(n: int = N_CANDLES, seed: int = 42) -> dict[str, np.ndarray]:
    """Seeded one-hour random walk (0.5 % per hour) with consistent OHLC."""
    return random_walk(n, step_ms=3_600_000, close_sd=0.005, open_sd=0.001, wick_sd=0.002, seed=seed)


def side_capandex(data: dict[str, np.ndarray]) -> dict[str, object]:
    from capandex.engine import Candles, validate_flow
    from capandex.engine.examples import sma_cross
    from capandex.research.objective import METRICS
    from capandex.research.optimizer import plan_scopes
    from capandex.research.request import parse_request
    from capandex.research.runner import Costs, Evaluator, run_study
    from capandex.research.study import Study

    flow = sma_cross(10, 30, ("stop_loss", STOP * 100))
    request = {"space": {"fast.period": {"values": FAST}, "slow.period": {"values": SLOW}}, "method": "grid"}
    costs = Costs(CAPITAL, FEE, SLIPPAGE)
    start = time.perf_counter()
    spec = parse_request(request, validate_flow(flow))
    scopes, _ = plan_scopes(spec, data["time"])
    study = Study(spec, scopes)
    run_study(study, Evaluator(flow, Candles.from_any(data), scopes, costs))
    seconds = time.perf_counter() - start
    table = study.tables[0]
    trades = int(np.nansum(table.metrics[:, METRICS.index("totalTrades")]))
    return {"seconds": seconds, "combinations": len(table), "trades": trades}


def side_capandex_optimize(data: dict[str, np.ndarray]) -> dict[str, object]:
    """The whole ``optimize()``: the grid, then the winner's cost stress, PBO and Deflated Sharpe."""
    from capandex.engine.examples import sma_cross
    from capandex.research.optimizer import optimize

    request = {"space": {"fast.period": {"values": FAST}, "slow.period": {"values": SLOW}}, "method": "grid"}
    start = time.perf_counter()
    result = optimize(sma_cross(10, 30, ("stop_loss", STOP * 100)), data, request, capital=CAPITAL, fee=FEE,
                      slippage=SLIPPAGE)
    return {"seconds": time.perf_counter() - start, "pbo": result["overfitting"]["pbo"]["pbo"],
            "best": result["best"]["params"]}


def side_vectorbt(data: dict[str, np.ndarray]) -> dict[str, object]:
    import pandas as pd
    import vectorbt as vbt

    index = pd.to_datetime(data["time"], unit="ms")
    series = {name: pd.Series(data[name], index) for name in ("open", "high", "low", "close")}

    def run(n: int) -> tuple[int, int]:
        close, open_, high, low = (series[k].iloc[:n] for k in ("close", "open", "high", "low"))
        fast = vbt.MA.run(close, [f for f, _ in GRID], short_name="fast")
        slow = vbt.MA.run(close, [s for _, s in GRID], short_name="slow")
        entries, exits = fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
        # signal at close t -> fill at open t+1: vectorbt's documented way is to shift the signals
        portfolio = vbt.Portfolio.from_signals(
            close, entries.vbt.fshift(1, fill_value=False), exits.vbt.fshift(1, fill_value=False),
            price=open_, open=open_, high=high, low=low, sl_stop=STOP, fees=FEE, slippage=SLIPPAGE,
            init_cash=CAPITAL, freq="1h")
        metrics = (portfolio.total_return(), portfolio.sharpe_ratio(), portfolio.max_drawdown(),
                   portfolio.trades.count())
        return len(metrics[0]), int(metrics[3].sum())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(2000)  # numba compilation out of the way
        start = time.perf_counter()
        combinations, trades = run(len(data["time"]))
    return {"seconds": time.perf_counter() - start, "combinations": combinations, "trades": trades}


def side_backtesting(data: dict[str, np.ndarray], full: bool) -> dict[str, object]:
    import pandas as pd
    from backtesting import Backtest
    from sma_cross_strategy import SmaCross

    frame = pd.DataFrame({"Open": data["open"], "High": data["high"], "Low": data["low"], "Close": data["close"],
                          "Volume": data["volume"]}, index=pd.to_datetime(data["time"], unit="ms"))
    combos = GRID if full else GRID[::10]
    allowed = set(combos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        Backtest(frame, SmaCross, cash=CAPITAL, commission=FEE, spread=SLIPPAGE).optimize(
            fast=FAST, slow=SLOW, constraint=lambda p: (p.fast, p.slow) in allowed, maximize="Sharpe Ratio")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "combinations": len(combos), "per_combination": seconds / len(combos),
            "grid_seconds": seconds / len(combos) * len(GRID)}


def run_side(name: str, extra: list[str]) -> tuple[dict[str, object], float]:
    """One side in a child process: its JSON result and its peak resident memory in MiB."""
    env = {**os.environ, "TQDM_DISABLE": "1"}  # backtesting.py's progress bars
    process = subprocess.Popen([sys.executable, __file__, "--side", name, *extra], stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{name} failed with exit code {process.returncode}")
    return json.loads(output), usage.ru_maxrss / 1024  # Linux reports KiB


def spread(values: list[float]) -> str:
    return (f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}" if len(values) > 1
            else f"{values[0]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("capandex", "capandex-optimize", "vectorbt", "backtesting"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (min / median / max)")
    parser.add_argument("--bt-full", action="store_true", help="backtesting.py over the whole grid (minutes)")
    parser.add_argument("--skip-backtesting-py", action="store_true")
    parser.add_argument("--skip-vectorbt", action="store_true")
    args = parser.parse_args()
    if args.side:
        data = candles()
        side = {"capandex": lambda: side_capandex(data), "capandex-optimize": lambda: side_capandex_optimize(data),
                "vectorbt": lambda: side_vectorbt(data),
                "backtesting": lambda: side_backtesting(data, args.bt_full)}[args.side]
        print(json.dumps(side()))
        return
    print(f"{len(GRID)} combinations × {N_CANDLES:,} one-hour candles; seconds min / median / max of "
          f"{args.repeat} runs, peak RSS of each run's process (max)")
    runs = [run_side("capandex", []) for _ in range(args.repeat)]
    ours = [float(r["seconds"]) for r, _ in runs]
    ours_memory = max(m for _, m in runs)
    first = runs[0][0]
    print(f"capandex        {spread(ours)} s   {first['trades']:,} trades   peak {ours_memory:,.0f} MiB")
    whole, whole_memory = run_side("capandex-optimize", [])
    print(f"  optimize()    {whole['seconds']:.3f} s with the winner's cost stress, PBO ({whole['pbo']:.3f}) and "
          f"Deflated Sharpe   peak {whole_memory:,.0f} MiB")
    if not args.skip_vectorbt:
        theirs = [run_side("vectorbt", []) for _ in range(args.repeat)]
        seconds = [float(r["seconds"]) for r, _ in theirs]
        memory = max(m for _, m in theirs)
        print(f"vectorbt        {spread(seconds)} s   {theirs[0][0]['trades']:,} trades   peak {memory:,.0f} MiB   "
              f"capandex {statistics.median(seconds) / statistics.median(ours):.1f}x faster (medians), "
              f"{memory / ours_memory:.1f}x less memory")
    if not args.skip_backtesting_py:
        result, memory = run_side("backtesting", ["--bt-full"] if args.bt_full else [])
        print(f"backtesting.py  {result['seconds']:.1f} s for {result['combinations']} combinations "
              f"({result['per_combination']:.2f} s each, {result['grid_seconds']:.0f} s for the grid"
              f"{'' if args.bt_full else ', scaled'})   peak {memory:,.0f} MiB (parent; its pool workers are "
              f"separate processes)   capandex {float(result['grid_seconds']) / statistics.median(ours):.0f}x faster")


if __name__ == "__main__":
    main()
