"""GET /api/flows/{flowId}/performance from closed positions, with the backtester's metrics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import insert

from capandex.db.schema import executions, new_id, positions, utcnow
from capandex.db.session import transaction
from capandex.engine import compute_metrics
from tests.capandex.engine.factories import sma_cross_flow

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _setup(client):
    flow = sma_cross_flow()
    flow_id = client.post("/api/flows", json={"name": "P", "nodes": flow["nodes"], "edges": flow["edges"],
                                              "settings": {"initialCapital": 1000}}).json()["id"]
    with transaction() as conn:
        execution = new_id("exec")
        conn.execute(insert(executions).values(id=execution, user_id=client.id, flow_id=flow_id, mode="paper",
                                               status="stopped", exchange="binance", symbol="BTC/USDT",
                                               timeframe="1h", initial_capital=1000.0, state={},
                                               started_at=utcnow()))
        for day, pnl in ((1, 50.0), (2, -20.0), (4, 30.0), (6, -10.0)):
            conn.execute(insert(positions).values(
                id=new_id("pos"), user_id=client.id, flow_id=flow_id, execution_id=execution, symbol="BTC/USDT",
                status="closed", units=1.0, entry_price=100.0, entry_time=T0 + (day - 1) * DAY + dt.timedelta(hours=1),
                exit_price=100.0 + pnl, exit_time=T0 + day * DAY, pnl=pnl, pnl_percent=pnl, fees=0.2,
                exit_reason="signal"))
        conn.execute(insert(positions).values(  # still open: not counted
            id=new_id("pos"), user_id=client.id, flow_id=flow_id, execution_id=execution, symbol="BTC/USDT",
            status="open", units=1.0, entry_price=100.0, entry_time=T0 + 7 * DAY))
    return flow_id


def test_metrics_and_equity_curve(api):
    me = api.as_user()
    flow_id = _setup(me)
    body = me.get(f"/api/flows/{flow_id}/performance").json()
    equity = np.array([1000.0, 1050.0, 1030.0, 1060.0, 1050.0])
    times = np.array([int((T0 + dt.timedelta(hours=1)).timestamp() * 1000)]
                     + [int((T0 + d * DAY).timestamp() * 1000) for d in (1, 2, 4, 6)])
    expected = compute_metrics(equity, times, np.array([50.0, -20.0, 30.0, -10.0]), 1000.0)
    assert body["equityCurve"] == [{"timestamp": int(t), "equity": e} for t, e in zip(times, equity, strict=True)]
    for key in ("totalTrades", "winRate", "pnl", "pnlPercent", "maxDrawdown", "maxDrawdownPercent", "sharpeRatio",
                "profitFactor"):
        assert body[key] == pytest.approx(expected[key]), key
    assert body["totalTrades"] == 4 and body["winRate"] == 0.5 and body["pnl"] == 50.0
    assert body["maxDrawdown"] == 20.0 and body["profitFactor"] == pytest.approx(80 / 30)


def test_date_filter_and_errors(api):
    me, other = api.as_user(), api.as_user()
    flow_id = _setup(me)
    window = me.get(f"/api/flows/{flow_id}/performance", params={"from": "2025-01-03T01:00:00Z", "to": "2025-01-05"})
    assert window.status_code == 200, window.json()
    assert window.json()["totalTrades"] == 1 and window.json()["pnl"] == 30.0
    empty = me.get(f"/api/flows/{flow_id}/performance", params={"from": "2030-01-01"}).json()
    assert empty["totalTrades"] == 0 and empty["equityCurve"] == [] and empty["profitFactor"] is None
    bad = me.get(f"/api/flows/{flow_id}/performance", params={"from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "from"
    for field, edge in (("from", "0001-01-01T00:00:00+01:00"), ("to", "9999-12-31T23:59:59-01:00")):
        beyond = me.get(f"/api/flows/{flow_id}/performance", params={field: edge})  # was a 500
        assert beyond.status_code == 422 and beyond.json()["error"]["details"][0]["field"] == field
    backwards = me.get(f"/api/flows/{flow_id}/performance", params={"from": "2025-02-01", "to": "2025-01-01"})
    assert backwards.status_code == 422
    assert other.get(f"/api/flows/{flow_id}/performance").status_code == 404


def test_the_equity_curve_is_downsampled_like_a_backtests(api):
    """One point per closed position grew without bound (a flow trading every other minute closes
    ~260,000 a year: a 13 MB answer); now at most 2,000, the first, last and deepest trough kept."""
    from capandex.engine import API_EQUITY_POINTS

    me = api.as_user()
    flow_id = _setup(me)
    with transaction() as conn:
        execution = conn.execute(executions.select().where(executions.c.flow_id == flow_id)).first().id
        pnls = np.where(np.arange(3000) == 1500, -400.0, 1.0)  # one deep loss in the middle
        conn.execute(insert(positions), [dict(
            id=new_id("pos"), user_id=me.id, flow_id=flow_id, execution_id=execution, symbol="BTC/USDT",
            status="closed", units=1.0, entry_price=100.0, entry_time=T0 + 10 * DAY + i * dt.timedelta(minutes=2),
            exit_price=100.0, exit_time=T0 + 10 * DAY + (2 * i + 1) * dt.timedelta(minutes=1), pnl=float(pnl),
            pnl_percent=0.0, fees=0.0, exit_reason="signal") for i, pnl in enumerate(pnls)])
    body = me.get(f"/api/flows/{flow_id}/performance").json()
    curve = body["equityCurve"]
    assert body["totalTrades"] == 3004 and 1900 < len(curve) <= API_EQUITY_POINTS
    before = 1000.0 + 50 - 20 + 30 - 10
    assert curve[0]["equity"] == 1000.0 and curve[-1]["equity"] == pytest.approx(before + 2999 - 400)
    shown = [p["equity"] for p in curve]
    assert before + 1500 in shown and before + 1500 - 400 in shown  # the peak and the deepest trough after it
