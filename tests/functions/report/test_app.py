"""``GET /api/engine/backtest/{id}/report`` through the gateway: a completed backtest's report as
one HTML page, rebuilt from the stored candles without the exchange; 409 before completion, 404
for anyone else's."""

from __future__ import annotations

from sqlalchemy import update

from capandex.db.schema import backtests
from capandex.db.session import transaction
from tests.functions.engine.test_backtest_routes import body, user  # noqa: F401 (the fixture)
from tests.utils.binance_server import BinanceServer


def test_a_completed_backtest_has_its_report(user, binance: BinanceServer, api) -> None:  # noqa: F811
    result = user.post("/api/engine/backtest", json=body(user.flow_id)).json()
    pages = binance.count("/api/v3/klines")
    report = user.get(f"/api/engine/backtest/{result['backtestId']}/report")
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("text/html")
    page = report.text
    assert "<title>SMA cross — backtest report</title>" in page and "binance BTC/USDT 1h" in page
    assert "Bokeh" in page and "cdn.bokeh.org" not in page
    assert f"{result['metrics']['totalTrades']:,}" in page
    assert binance.count("/api/v3/klines") == pages  # the candles came from the store

    stranger = api.as_user()
    missing = stranger.get(f"/api/engine/backtest/{result['backtestId']}/report")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    with transaction() as conn:
        conn.execute(update(backtests).where(backtests.c.id == result["backtestId"]).values(status="running"))
    running = user.get(f"/api/engine/backtest/{result['backtestId']}/report")
    assert (running.status_code, running.json()["error"]["code"]) == (409, "conflict")
