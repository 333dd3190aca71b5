"""The backtest request's work budget through the API: nodes × candles, refused before any
exchange call when too large, and the issue's bollinger(20000) over ~65,000 cached candles."""

from __future__ import annotations

import datetime as dt

import pytest

from capandex.engine import Candles
from tests.capandex.engine.factories import HOUR_MS, random_walk
from tests.capandex.engine.test_cost import indicator_flow
from tests.utils.binance_server import BinanceServer
from tests.utils.candle_cache import cache_candles

START = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)
CACHED = 65_000  # ~7.4 years of 1h candles


@pytest.fixture
def user(api, binance_env: BinanceServer):
    walk = random_walk(CACHED, seed=11)
    start_ms = int(START.timestamp() * 1000)
    cache_candles("binance", "BTC/USDT", "1h", Candles.from_arrays(
        start_ms + (walk.time - walk.time[0]), walk.open * 400, walk.high * 400, walk.low * 400, walk.close * 400,
        walk.volume))
    return api.as_user()


def run(user, flow: dict, hours: int, timeframe: str = "1h"):
    flow_id = user.post("/api/flows", json={"name": "cost", **flow}).json()["id"]
    end = START + dt.timedelta(milliseconds=hours * HOUR_MS)
    return user.post("/api/engine/backtest", json={
        "flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": timeframe,
        "startDate": START.isoformat(), "endDate": end.isoformat()})


def test_bollinger_20000_over_65000_cached_candles_answers(user, binance: BinanceServer) -> None:
    """Was 18 s of CPU and 7 GB (an (N-P)×P array); now O(N): answered in the request, from the
    cache (the time and memory are measured in benchmarks/backtest_cost.py)."""
    flow = indicator_flow(("bollinger", {"period": 20_000, "stddev": 2}))
    response = run(user, flow, CACHED)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["equityCurve"][0]["timestamp"] == "2017-01-01T00:00:00Z"
    assert binance.count("/api/v3/klines") == 0


def test_a_period_longer_than_the_range_is_the_warm_up_outcome(user) -> None:
    response = run(user, indicator_flow(("bollinger", {"period": 20_000, "stddev": 2})), 100)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["trades"] == [] and body["metrics"]["totalTrades"] == 0
    assert body["warnings"] == ["only 100 candles but the flow needs 20000 before its first signal: no trade could "
                                "happen"]


def test_500_nodes_over_a_year_of_minutes_is_a_422_before_any_exchange_call(user, binance: BinanceServer) -> None:
    flow = indicator_flow(*[("bollinger", {"period": 20 + i}) for i in range(249)])  # 499 nodes (500 allowed)
    before = binance.count()
    response = run(user, flow, 366 * 24 - 24, timeframe="1m")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["endDate", "nodes"]
    assert "the limit is 512 MiB" in error["message"]
    assert binance.count() == before


def test_a_flow_that_trades_on_every_other_candle_lists_the_first_trades(user, api) -> None:
    """Every trade was listed: a flow trading every other 1m candle for a year answered a 70 MB body
    (7.5 s per GET, 21 s per POST; Lambda returns at most 6 MB) and drew a 70 MB report in 1 GB.
    Now the first 5,000 are listed and marked, the metrics count all, and a warning says so."""
    from capandex.engine import LISTED_TRADES
    from tests.capandex.engine.factories import price_rule_flow

    answer = run(user, price_rule_flow(0.0, 1e9), hours=12_000)  # buys when flat, sells when long
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["metrics"]["totalTrades"] == 6_000 and len(body["trades"]) == LISTED_TRADES == 5_000
    assert body["warnings"] == ["6,000 trades: the first 5,000 are listed (the metrics count all)."]
    assert len(answer.content) < 2_000_000
    again = user.get(f"/api/engine/backtest/{body['backtestId']}").json()
    assert again["trades"] == body["trades"]
    report = user.get(f"/api/engine/backtest/{body['backtestId']}/report")
    assert report.status_code == 200 and len(report.content) < 6_000_000
    assert "6,000 trades: the first 5,000 are marked and listed" in report.text
