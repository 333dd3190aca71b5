"""The backtest report on a year of 1m candles: render time, file size, and what Bokeh weighs.

A seeded random walk (a benchmark input, not market data) of 525,600 one-minute candles, the
SMA(10)/SMA(30) cross with RSI(14) drawn in its own pane. Timed: the whole HTML render (report
data, Bokeh models, inlined BokehJS) and the PNG. The sizes of Bokeh and the packages it needs
are what deciding where the report route runs rests on (README, design notes: "The report is a function of its own").

Run:  .venv/bin/python benchmarks/report.py [--candles 525600]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from engine_vs_peers import FLOW, candles

from capandex.engine import Candles, backtest
from capandex.report import write_report

BOKEH_AND_DEPENDENCIES = ("bokeh", "contourpy", "PIL", "tornado", "xyzservices", "narwhals", "jinja2", "markupsafe",
                          "yaml")


def package_mb(name: str) -> float:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return 0.0
    root = Path(next(iter(spec.submodule_search_locations)))
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=525_600)
    n = parser.parse_args().candles
    data = Candles.from_any(candles(n))
    flow = {**FLOW, "name": "SMA cross", "nodes": [*FLOW["nodes"], {"id": "rsi", "type": "indicator",
                                                                   "data": {"kind": "rsi", "period": 14}}]}
    result = backtest(flow, data)
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".html", ".png"):
            path = Path(folder) / f"report{suffix}"
            started = time.perf_counter()
            write_report(result, data, flow, path, exchange="(random walk)", symbol="X/Y", timeframe="1m")
            print(f"{suffix[1:]:>4}: {time.perf_counter() - started:5.2f} s, {path.stat().st_size / 1e6:5.1f} MB "
                  f"({n:,} candles, {result.metrics['totalTrades']:,} trades)")
    sizes = {name: package_mb(name) for name in BOKEH_AND_DEPENDENCIES}
    print("installed size, MB: " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items())
          + f"; total {sum(sizes.values()):.1f}")


if __name__ == "__main__":
    main()
