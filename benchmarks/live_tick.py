"""Cost of one tick-worker tick in paper mode, database work included.

    .venv/bin/python benchmarks/live_tick.py [--postgres] [--executions 50] [--ticks 20]

Starts N paper executions of an SMA-cross flow with a stop-loss (1h candles), then runs T
scheduler passes; each pass processes one new candle for every execution exactly as the worker
does for one SQS record (read, candles, stepper over the flow's history window, row lock, tick
record, orders/positions, state write). Candles come from the loopback Binance (real ccxt, real
HTTP) through capandex.marketdata — the first pass fills the candle store, later passes hit it,
as a warm Lambda container does. Prints ms per tick (p50/p95) and ticks per second of one worker.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid

from harness import add_postgres_option, beside_loopback_binance


def main() -> None:
    parser = argparse.ArgumentParser()
    add_postgres_option(parser)
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()

    with beside_loopback_binance(postgres=args.postgres):
        from capandex.db.session import transaction
        from capandex.live.executions import start_execution
        from capandex.live.worker import process_tick
        from tests.capandex.engine.factories import sma_cross_flow
        from tests.capandex.live.helpers import make_flow

        hour = 3_600_000
        start = int(dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
        ids = []
        with transaction() as conn:
            for _ in range(args.executions):
                user = uuid.uuid4()
                flow_id = make_flow(conn, user, sma_cross_flow(10, 30, ("stop_loss", 2.0)))
                ids.append(start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                           now_ms=start)["executionId"])
        timings, fills = [], 0
        for k in range(args.ticks):
            candle = start + k * hour
            for execution in ids:
                began = time.perf_counter()
                outcome = process_tick(execution, candle)
                timings.append((time.perf_counter() - began) * 1000)
                fills += outcome.fills
        warm = timings[len(ids):]  # the first pass fetched and stored the candle history
        p50, p95 = statistics.median(warm), statistics.quantiles(warm, n=20)[18]
        db = "postgres" if args.postgres else "sqlite"
        print(f"{len(timings)} ticks ({args.executions} executions x {args.ticks} candles, {db}), {fills} fills")
        print(f"first pass (cold candle store): {statistics.median(timings[:len(ids)]):.1f} ms/tick median")
        print(f"warm: p50 {p50:.1f} ms/tick, p95 {p95:.1f} ms/tick, {1000 / statistics.mean(warm):.0f} ticks/s "
              "per worker")


if __name__ == "__main__":
    main()
