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


def test_every_trade_of_a_backtest_is_reachable_a_page_at_a_time(user, api) -> None:
    """The result lists the first 5,000 trades; ``GET …/trades`` pages through all of them (each page
    one range read of the stored records): the pages agree with the listed trades where both have
    them, and their pnl adds up to the metrics' over all 6,000."""
    from tests.capandex.engine.factories import price_rule_flow

    body = run(user, price_rule_flow(0.0, 1e9), hours=12_000).json()
    pages = f"/api/engine/backtest/{body['backtestId']}/trades"
    first = user.get(pages).json()
    assert (first["total"], first["offset"], len(first["trades"])) == (6_000, 0, 1_000)
    assert first["trades"] == body["trades"][:1_000]
    across = user.get(pages, params={"offset": 4_990, "limit": 20}).json()["trades"]
    assert across[:10] == body["trades"][4_990:] and len(across) == 20
    whole = [t for offset in (0, 5_000) for t in
             user.get(pages, params={"offset": offset, "limit": 5_000}).json()["trades"]]
    assert len(whole) == 6_000 and whole[:5_000] == body["trades"]
    assert [t["entryTime"] for t in whole] == sorted(t["entryTime"] for t in whole)
    assert sum(t["pnl"] for t in whole) == pytest.approx(body["metrics"]["pnl"], rel=1e-9)
    assert user.get(pages, params={"offset": 6_000}).json() == {"trades": [], "total": 6_000, "offset": 6_000}
    for bad in ({"limit": 0}, {"limit": 5_001}, {"offset": -1}):
        assert user.get(pages, params=bad).status_code == 422
    assert api.as_user().get(pages).status_code == 404  # another user's backtest


def test_trades_wait_for_the_backtest_and_outlive_an_earlier_release(user) -> None:
    """A running backtest has no trades yet (409); a result stored before the records were (no
    ``trades.bin``: its result.json listed every trade) is paged from that list."""
    from sqlalchemy import update

    from capandex.backtests.core import TRADES_FILE, beside
    from capandex.db.schema import backtests
    from capandex.db.session import transaction
    from capandex.marketdata import get_store
    from tests.capandex.engine.factories import price_rule_flow

    body = run(user, price_rule_flow(0.0, 1e9), hours=200).json()
    pages = f"/api/engine/backtest/{body['backtestId']}/trades"
    with transaction() as conn:
        key = conn.execute(backtests.select().where(backtests.c.id == body["backtestId"])).one().result_key
        conn.execute(update(backtests).where(backtests.c.id == body["backtestId"]).values(status="running"))
    running = user.get(pages)
    assert running.status_code == 409 and "running" in running.json()["error"]["message"]
    with transaction() as conn:
        conn.execute(update(backtests).where(backtests.c.id == body["backtestId"]).values(status="completed"))
    (get_store().root / beside(key, TRADES_FILE)).unlink()  # as an earlier release stored it
    earlier = user.get(pages, params={"offset": 90, "limit": 20}).json()
    assert earlier == {"trades": body["trades"][90:], "total": 100, "offset": 90}


def test_a_result_stored_with_its_first_trades_only_says_so_past_them(user) -> None:
    """Between the cap on listed trades and the stored records, a result kept the first 5,000 only
    (here 40 of 100): pages within them are served, a page past them is a 409 saying why — never a
    short page passed off as the end."""
    import json

    from capandex.backtests.core import TRADES_FILE, beside
    from capandex.db.schema import backtests
    from capandex.db.session import transaction
    from capandex.marketdata import get_store
    from tests.capandex.engine.factories import price_rule_flow

    body = run(user, price_rule_flow(0.0, 1e9), hours=200).json()
    with transaction() as conn:
        key = conn.execute(backtests.select().where(backtests.c.id == body["backtestId"])).one().result_key
    store = get_store()
    (store.root / beside(key, TRADES_FILE)).unlink()
    store.put(key, json.dumps({**body, "trades": body["trades"][:40]}).encode())
    pages = f"/api/engine/backtest/{body['backtestId']}/trades"
    assert user.get(pages, params={"limit": 40}).json() == {"trades": body["trades"][:40], "total": 100, "offset": 0}
    past = user.get(pages, params={"offset": 30, "limit": 20})
    assert past.status_code == 409 and "first 40 trades only" in past.json()["error"]["message"]
