"""The issue-11 backtest: bollinger(20000) over ~65,000 cached 1h candles, through the whole API.

    .venv/bin/python benchmarks/backtest_cost.py [--candles 65000] [--period 20000] [--runs 3]

Before (issue 11): 18 s of CPU and 7 GB, the rolling deviation materialising an (N−P)×P array.
Target: HTTP 200 in under 2 s with under 300 MB of extra memory (or a 422 naming the field).
Runs on the embedded defaults (SQLite, the local candle store in a temporary directory, filled
first so no page is fetched) with the loopback Binance answering the market listing. Memory is the
request's peak Python/numpy allocation (tracemalloc) and the growth of the process's peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
import tracemalloc
import uuid

from harness import beside_loopback_binance

START = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=65_000)
    parser.add_argument("--period", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with beside_loopback_binance() as server:
        from fastapi.testclient import TestClient

        from capandex.api.gateway import Gateway
        from capandex.auth import issue_dev_token
        from capandex.config import DEV_JWT_SECRET
        from capandex.engine import Candles
        from tests.capandex.engine.factories import random_walk
        from tests.capandex.engine.test_cost import indicator_flow
        from tests.utils.candle_cache import cache_candles

        walk = random_walk(args.candles, seed=11)
        start_ms = int(START.timestamp() * 1000)
        cache_candles("binance", "BTC/USDT", "1h", Candles.from_arrays(
            start_ms + (walk.time - walk.time[0]), walk.open * 400, walk.high * 400, walk.low * 400,
            walk.close * 400, walk.volume))
        headers = {"Authorization": f"Bearer {issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET)}"}
        flow = indicator_flow(("bollinger", {"period": args.period, "stddev": 2}))
        end = START + dt.timedelta(hours=args.candles)
        with TestClient(Gateway(["flows", "engine"])) as client:
            flow_id = client.post("/api/flows", json={"name": "bb", **flow}, headers=headers).json()["id"]
            body = {"flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
                    "startDate": START.isoformat(), "endDate": end.isoformat()}
            client.post("/api/engine/backtest", json=body, headers=headers)  # warm: imports, markets
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            times, peaks = [], []
            for _ in range(args.runs):
                tracemalloc.start()
                began = time.perf_counter()
                response = client.post("/api/engine/backtest", json=body, headers=headers)
                times.append(time.perf_counter() - began)
                peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
    trades = len(response.json().get("trades", []))
    print(f"bollinger({args.period}) over {args.candles:,} cached 1h candles: HTTP {response.status_code}, "
          f"{trades} trades, {server.count('/api/v3/klines')} kline pages fetched")
    print(f"request time: best {min(times):.3f} s, worst {max(times):.3f} s (of {args.runs}, tracemalloc on)")
    print(f"extra memory: peak allocation {max(peaks):.1f} MiB; peak RSS grew {rss_growth:.1f} MiB")
    ok = response.status_code == 200 and max(times) < 2.0 and max(max(peaks), rss_growth) < 300
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
