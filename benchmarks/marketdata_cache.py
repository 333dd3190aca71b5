"""Candle cache benchmark: a year of 1m candles (525,600) from the loopback Binance with 50 ms of
latency per request, cold cache vs warm cache, then the whole ``POST /api/engine/backtest`` over
the warm cache.

    .venv/bin/python benchmarks/marketdata_cache.py [--latency-ms 50] [--days 365]

Targets (issue 4): the warm run fetches 0 pages; the backtest request completes in under 1 s.
Runs on the embedded defaults (SQLite and the local chunk store in a temporary directory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import uuid

from harness import beside_loopback_binance

START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    end = START + dt.timedelta(days=args.days)
    start_ms, end_ms = int(START.timestamp() * 1000), int(end.timestamp() * 1000)

    with beside_loopback_binance(latency_s=args.latency_ms / 1000) as server:
        from capandex.marketdata import fetch_candles, progress_bar

        def run(label: str) -> tuple[float, int, int]:
            klines = server.count("/api/v3/klines")
            began = time.perf_counter()
            with progress_bar(label) as bar:
                candles = fetch_candles("binance", "BTC/USDT", "1m", start_ms, end_ms, progress=bar)
            return time.perf_counter() - began, len(candles), server.count("/api/v3/klines") - klines

        cold = run("cold")
        warm = run("warm")
        request_s, status, candles = backtest_request(START.isoformat(), end.isoformat())

    print()
    print(f"{'run':<28}{'candles':>10}{'pages':>8}{'seconds':>10}")
    print(f"{'fetch_candles, cold cache':<28}{cold[1]:>10,}{cold[2]:>8}{cold[0]:>10.2f}")
    print(f"{'fetch_candles, warm cache':<28}{warm[1]:>10,}{warm[2]:>8}{warm[0]:>10.3f}")
    print(f"{'POST /api/engine/backtest':<28}{candles:>10,}{0:>8}{request_s:>10.3f}  (HTTP {status}, warm)")
    ok = warm[2] == 0 and request_s < 1.0 and status == 200
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


def backtest_request(start: str, end: str) -> tuple[float, int, int]:
    """Time one POST /api/engine/backtest (a fresh user and an SMA-cross flow) through the gateway."""
    from fastapi.testclient import TestClient

    from capandex.api.gateway import Gateway
    from capandex.auth import issue_dev_token
    from capandex.config import DEV_JWT_SECRET
    from tests.capandex.engine.factories import sma_cross_flow

    headers = {"Authorization": f"Bearer {issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET)}"}
    with TestClient(Gateway(["flows", "engine"])) as client:
        flow = client.post("/api/flows", json={"name": "SMA", **sma_cross_flow(10, 30)}, headers=headers).json()
        body = {"flowId": flow["id"], "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m",
                "startDate": start, "endDate": end}
        began = time.perf_counter()
        response = client.post("/api/engine/backtest", json=body, headers=headers)
        elapsed = time.perf_counter() - began
    result = response.json()
    curve = result.get("equityCurve") or []
    print(f"backtest: HTTP {response.status_code}, {result.get('metrics', {}).get('totalTrades')} trades, "
          f"{len(curve)} equity points", file=sys.stderr)
    return elapsed, response.status_code, int((dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start))
                                              / dt.timedelta(minutes=1))


if __name__ == "__main__":
    sys.exit(main())
