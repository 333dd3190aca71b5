"""What ``GET /api/engine/backtest/{id}/trades`` costs: a page of a backtest with every trade stored.

    .venv/bin/python benchmarks/trade_pages.py [--candles 525600] [--runs 5]

A flow that buys when flat and sells when long trades on every other candle: over a year of 1m
candles that is 262,800 trades. The result lists the first 5,000; every trade is stored beside it
as fixed-width records (:data:`capandex.engine.result.TRADE_RECORD`), and a page is one range read
of them. Measured: writing the records (part of storing a result), their size, and reading a page of
5,000 at the start, the middle and the end of the file from a local store (what ``capandex serve``
does; S3 serves the same byte range), turned into the JSON the route answers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
from harness import random_walk

PAGE = 5_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=525_600)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from capandex.engine import Candles, backtest
    from capandex.engine.result import TRADE_RECORD, TradeTable
    from capandex.marketdata import LocalStore
    from tests.capandex.engine.factories import price_rule_flow

    walk = random_walk(args.candles, step_ms=60_000, close_sd=0.001, open_sd=0.0002, wick_sd=0.0005)
    result = backtest(price_rule_flow(0.0, 1e9), Candles.from_any(walk))
    trades = len(result.table)
    writes, pages, sizes = [], {"start": [], "middle": [], "end": []}, {}
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(root)
        for _ in range(args.runs):
            began = time.perf_counter()
            store.put("r/trades.bin", result.table.to_records().tobytes())
            writes.append(time.perf_counter() - began)
        size = TRADE_RECORD.itemsize
        for name, offset in (("start", 0), ("middle", trades // 2), ("end", trades - PAGE)):
            for _ in range(args.runs):
                began = time.perf_counter()
                data = store.get_range("r/trades.bin", offset * size, (offset + PAGE) * size)
                assert data is not None
                body = json.dumps({"trades": TradeTable.from_records(np.frombuffer(data, TRADE_RECORD)).to_dicts(),
                                   "total": trades, "offset": offset})
                pages[name].append(time.perf_counter() - began)
            sizes[name] = len(body)
    print(f"{trades:,} trades over {args.candles:,} candles; records {trades * size / 1e6:.1f} MB, "
          f"written in {statistics.median(writes) * 1000:.0f} ms (median of {args.runs})")
    for name, timings in pages.items():
        print(f"page of {PAGE:,} at the {name:<6}: {statistics.median(timings) * 1000:5.1f} ms, "
              f"{sizes[name] / 1e6:.2f} MB of JSON")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
