"""Start, stop and status of executions, and the webhook trigger, through the API."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import insert

from capandex.db.schema import exchange_keys, new_id, utcnow
from capandex.db.session import transaction
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import server_error

SETTINGS = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}


@pytest.fixture(autouse=True)
def exchange(binance_env):
    """A start asks the exchange whether it lists the flow's symbol: the loopback Binance answers."""
    return binance_env


def _flow(client, extra_nodes=(), settings=SETTINGS):
    flow = sma_cross_flow()
    body = {"name": "F", "nodes": flow["nodes"] + list(extra_nodes), "edges": flow["edges"], "settings": settings}
    return client.post("/api/flows", json=body).json()["id"]


def test_start_status_stop(api):
    """The reference's status keys, plus the engine's own (``lagCandles`` …)."""
    me = api.as_user()
    flow_id = _flow(me)
    started = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    assert started.status_code == 200
    execution = started.json()["executionId"]
    assert execution.startswith("exec_") and started.json()["startedAt"].endswith("Z")
    status = me.get("/api/engine/status", params={"executionId": execution}).json()
    assert {k: status[k] for k in ("executionId", "status", "currentTick", "pnl", "pnlPercent", "openPositions",
                                   "totalTrades")} == {"executionId": execution, "status": "running",
                                                       "currentTick": 0, "pnl": 0.0, "pnlPercent": 0.0,
                                                       "openPositions": 0, "totalTrades": 0}
    assert status["lagCandles"] == 0  # started just now: the first candle has not settled yet
    assert status["replay"] is False and status["lastCandle"].endswith(":00:00Z")  # the last closed before it
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).status_code == 409
    stopped = me.post("/api/engine/stop", json={"executionId": execution}).json()
    assert stopped["status"] == "stopped"
    assert me.post("/api/engine/stop", json={"executionId": execution}).json()["status"] == "stopped"
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).status_code == 200
    events = [n["event"] for n in me.get("/api/notifications").json()["notifications"]]
    assert events.count("engine_start") == 2 and events.count("engine_stop") == 1


def test_parity_report_route(api):
    me, other = api.as_user(), api.as_user()
    execution = me.post("/api/engine/start", json={"flowId": _flow(me), "mode": "paper"}).json()["executionId"]
    assert me.get("/api/engine/status", params={"executionId": execution}).json()["parity"] is None
    response = me.get("/api/engine/parity", params={"executionId": execution})
    assert response.status_code == 200
    body = response.json()
    assert (body["executionId"], body["from"], body["trades"], body["truncated"]) == (execution, None, [], False)
    assert body["summary"]["matched"] == 0 and body["summary"]["trackingError"] == 0.0
    assert me.get("/api/engine/status", params={"executionId": execution}).json()["parity"] == body["summary"]
    assert other.get("/api/engine/parity", params={"executionId": execution}).status_code == 404
    refused = me.get("/api/engine/parity", params={"executionId": execution, "limit": 0})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "limit"


def test_bad_input_and_other_users(api):
    me, other = api.as_user(), api.as_user()
    flow_id = _flow(me)
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "moon"}).json()["error"]["details"][0][
        "field"] == "mode"
    assert me.post("/api/engine/start", json={"mode": "paper"}).json()["error"]["details"][0]["field"] == "flowId"
    live = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "live"})
    assert live.status_code == 422 and live.json()["error"]["details"][0]["field"] == "exchangeKeyId"
    no_market = _flow(me, settings={"exchange": "binance"})
    response = me.post("/api/engine/start", json={"flowId": no_market, "mode": "paper"})
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["error"]["details"]} == {"settings.symbol", "settings.timeframe"}
    assert other.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).status_code == 404
    execution = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).json()["executionId"]
    assert other.get("/api/engine/status", params={"executionId": execution}).status_code == 404
    assert other.post("/api/engine/stop", json={"executionId": execution}).status_code == 404
    assert me.get("/api/engine/status").status_code == 422


def test_live_needs_a_valid_key_of_the_flows_exchange(api):
    me = api.as_user()
    flow_id = _flow(me)
    keys = {}
    with transaction() as conn:
        for exchange, valid in (("okx", True), ("binance", False), ("binance", True)):
            key_id = keys[(exchange, valid)] = new_id("key")
            conn.execute(insert(exchange_keys).values(id=key_id, user_id=me.id, exchange=exchange, api_key_hint="k",
                                                      sealed={}, is_valid=valid, created_at=utcnow()))
    for key in (("okx", True), ("binance", False)):
        response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "live",
                                                      "exchangeKeyId": keys[key]})
        assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "exchangeKeyId"
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "live",
                                              "exchangeKeyId": "key_missing"}).status_code == 404
    ok = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "live",
                                            "exchangeKeyId": keys[("binance", True)]})
    assert ok.status_code == 200 and ok.json()["mode"] == "live"


def test_webhook_fires_once_per_call(api, monkeypatch):
    from capandex.live import webhooks

    monkeypatch.setattr(webhooks, "default_price", lambda exchange, symbol: 100.0)
    me, other = api.as_user(), api.as_user()
    flow_id = _flow(me, [{"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}])
    plain = _flow(me)
    assert me.post(f"/api/flows/{plain}/webhook").status_code == 422
    assert other.post(f"/api/flows/{flow_id}/webhook").status_code == 404
    url = me.post(f"/api/flows/{flow_id}/webhook").json()["url"]
    assert url.startswith(f"/api/webhooks/{flow_id}/")
    assert api.client.post(url, content=b"buy").status_code == 409  # not running yet
    me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})

    first = api.client.post(url, content=b'{"action": "buy", "id": "alert-1"}')
    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert first.json()["orders"][0]["side"] == "buy" and first.json()["orders"][0]["price"] == 100.1
    again = api.client.post(url, content=b'{"action": "buy", "id": "alert-1"}')
    assert again.json() == {**first.json(), "duplicate": True, "orders": []}
    sell = api.client.post(url, content=b"sell").json()
    assert sell["orders"][0]["side"] == "sell"
    assert api.client.post(url, content=b"sell").json()["duplicate"] is True  # same body, same minute
    status = me.get("/api/engine/status", params={"executionId": first.json()["executionId"]}).json()
    assert status["totalTrades"] == 1

    assert api.client.post(url[:-3] + "xyz", content=b"buy").status_code == 404
    assert api.client.post(url, content=b'{"action": "hold"}').json()["error"]["details"][0]["field"] == "action"
    assert api.client.post(url, content=b"x" * 10_000).status_code == 413
    rotated = me.post(f"/api/flows/{flow_id}/webhook").json()["url"]
    assert rotated != url and api.client.post(url, content=b"buy").status_code == 404


def test_a_replay_refuses_webhook_alerts(api, monkeypatch):
    """An alert fires at today's price: a replay of the past is driven by `capandex tick --at` only."""
    import datetime as dt

    from capandex.live import webhooks

    monkeypatch.setattr(webhooks, "default_price", lambda exchange, symbol: pytest.fail("the exchange was asked"))
    me = api.as_user()
    flow_id = _flow(me, [{"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}])
    url = me.post(f"/api/flows/{flow_id}/webhook").json()["url"]
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper",
                                              "replayFrom": past.isoformat()}).status_code == 200
    refused = api.client.post(url, content=b"buy")
    assert refused.status_code == 409 and "replays the past" in refused.json()["error"]["message"]


def test_webhook_rate_limit(api, monkeypatch, configure):
    from capandex.live import webhooks

    monkeypatch.setattr(webhooks, "default_price", lambda exchange, symbol: 100.0)
    monkeypatch.setenv("CAPANDEX_WEBHOOK_CALLS_PER_MINUTE", "2")
    from capandex.config import get_settings

    get_settings.cache_clear()
    me = api.as_user()
    flow_id = _flow(me, [{"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}])
    url = me.post(f"/api/flows/{flow_id}/webhook").json()["url"]
    me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    codes = [api.client.post(url, content=f'{{"id": "c{i}"}}'.encode()).status_code for i in range(3)]
    assert codes == [200, 200, 429]


def test_a_timeframe_market_data_cannot_serve_is_refused_at_start(api):
    me = api.as_user()
    for timeframe in ("7m", "1w", "0m"):
        flow_id = _flow(me, settings={**SETTINGS, "timeframe": timeframe})
        response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
        assert response.status_code == 422, timeframe
        assert response.json()["error"]["details"][0]["field"] == "settings.timeframe"


def test_a_flow_using_obv_is_refused_at_start_naming_the_node(api):
    me = api.as_user()
    flow = sma_cross_flow()
    nodes = [*flow["nodes"], {"id": "flowObv", "type": "indicator", "data": {"kind": "obv"}}]
    edges = [e for e in flow["edges"] if e["id"] != "e2"] + [
        {"id": "e9", "source": "flowObv", "target": "up", "targetHandle": "b"}]
    flow_id = me.post("/api/flows", json={"name": "OBV", "nodes": nodes, "edges": edges, "settings": SETTINGS}
                      ).json()["id"]
    response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "data.kind", "message": "OBV cannot run in paper or live mode", "nodeId": "flowObv"}]


def test_a_symbol_the_exchange_does_not_list_is_refused_at_start(api):
    me = api.as_user()
    for symbol in ("NOPE/USDT", "LUNA/USDT"):  # unknown, and listed but halted (status BREAK)
        flow_id = _flow(me, settings={**SETTINGS, "symbol": symbol})
        response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
        assert response.status_code == 422, symbol
        error = response.json()["error"]
        assert error["details"][0]["field"] == "settings.symbol" and error["details"][0]["exchange"] == "binance"
        assert symbol in error["message"] and "binance" in error["message"]
    unknown_exchange = _flow(me, settings={**SETTINGS, "exchange": "nowhere"})
    response = me.post("/api/engine/start", json={"flowId": unknown_exchange, "mode": "paper"})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "settings.exchange"
    dashboard = me.get("/api/dashboard/multi-flow").json()
    assert dashboard["aggregate"]["runningFlows"] == 0


def test_the_symbol_is_checked_with_no_transaction_open(api, monkeypatch):
    """The exchange may take seconds to answer: the request's transaction must not wait for it."""
    from capandex.db import session
    from capandex.exchanges import market

    open_now, seen = [0], []
    real_transaction, real_list = session.transaction, market.list_symbols

    @contextlib.contextmanager
    def counted(*args, **kwargs):
        with real_transaction(*args, **kwargs) as conn:
            open_now[0] += 1
            try:
                yield conn
            finally:
                open_now[0] -= 1

    def listing(exchange_id):
        seen.append(open_now[0])
        return real_list(exchange_id)

    monkeypatch.setattr(session, "transaction", counted)
    monkeypatch.setattr(market, "list_symbols", listing)
    me = api.as_user()
    response = me.post("/api/engine/start", json={"flowId": _flow(me), "mode": "paper"})
    assert response.status_code == 200 and seen == [0]


def test_an_unreachable_exchange_refuses_the_start(api, exchange, monkeypatch):
    from capandex.exchanges import retry

    monkeypatch.setattr(retry, "sleep", lambda seconds: None)
    me = api.as_user()
    flow_id = _flow(me)
    exchange.inject("/api/v3/exchangeInfo", server_error(503), times=3)  # the first try and both retries
    response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"
    assert "not started" in response.json()["error"]["message"]
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).status_code == 200  # none left


def test_a_flow_edited_between_the_check_and_the_start_is_not_started(api):
    from capandex.errors import Conflict
    from capandex.live.executions import check_market, start_execution

    me = api.as_user()
    flow_id = _flow(me)
    assert check_market(user_id=me.id, flow_id=flow_id) == ("binance", "BTC/USDT")
    with transaction() as conn, pytest.raises(Conflict):  # checked before its symbol was changed
        start_execution(conn, user_id=me.id, flow_id=flow_id, mode="paper", checked_market=("binance", "ETH/USDT"))


def test_a_paper_start_can_replay_the_past(api):
    """``replayFrom`` starts a paper execution as if at a past instant, so `capandex tick --at`
    replays candle by candle what the flow would have done since then."""
    import datetime as dt

    from capandex.live.ticks import run_pass

    me = api.as_user()
    flow_id = _flow(me)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=5)
    started = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper",
                                                   "replayFrom": start.isoformat()})
    assert started.status_code == 200, started.text
    execution = started.json()["executionId"]
    for hours in (1, 2, 3):  # the candle opening at `start` closes an hour later, settles a minute after
        outcomes = run_pass(start + dt.timedelta(hours=hours, minutes=1))
        assert [o.status for o in outcomes if o.execution_id == execution] == ["done"]
    status = me.get("/api/engine/status", params={"executionId": execution}).json()
    assert status["currentTick"] == 3
    # the status says what it is and where it stands: the third candle after the one before `start`
    third = (start + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (status["replay"], status["lastCandle"]) == (True, third)
    # the clock's own pass (capandex serve's minute, the EventBridge schedule) leaves a replay alone
    assert [o for o in run_pass() if o.execution_id == execution] == []
    assert me.get("/api/engine/status", params={"executionId": execution}).json()["currentTick"] == 3


def test_stop_keeps_or_closes_the_paper_position(api, monkeypatch):
    """A stop leaves the open position open and says so; ``closePosition`` sells it at the last close."""
    from capandex.live import webhooks

    monkeypatch.setattr(webhooks, "default_price", lambda exchange, symbol: 100.0)
    me = api.as_user()
    for close, open_after in ((False, 1), (True, 0)):
        flow_id = _flow(me, [{"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}])
        url = me.post(f"/api/flows/{flow_id}/webhook").json()["url"]
        execution = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).json()["executionId"]
        assert api.client.post(url, content=b"buy").status_code == 200  # filled at 100 × (1 + slippage)
        stopped = me.post("/api/engine/stop", json={"executionId": execution, "closePosition": close})
        assert stopped.status_code == 200, stopped.text
        assert (stopped.json()["status"], stopped.json()["openPositions"]) == ("stopped", open_after)
        assert stopped.json()["totalTrades"] == 1 - open_after
        note = me.get("/api/notifications", params={"type": "engine_stop"}).json()["notifications"][0]
        assert ("stays open" in note["message"]) is (not close)
    assert stopped.json()["pnl"] < 0  # bought and sold at the same price: both fees and slippages paid


def test_closing_a_replay_dates_the_sale_at_its_last_close(api):
    """A replay's ``closePosition`` sells at the last replayed close, and the trade is dated then —
    not at the wall clock, which would stretch the flow's performance across the years between."""
    import datetime as dt

    from capandex.live.ticks import run_pass

    me = api.as_user()
    always_long = {"name": "Hold", "settings": SETTINGS, "nodes": [
        {"id": "close", "type": "price", "data": {"field": "close"}},
        {"id": "above", "type": "condition", "data": {"operator": ">", "value": 0}},
        {"id": "buy", "type": "action", "data": {"action": "buy"}}],
        "edges": [{"source": "close", "target": "above", "targetHandle": "a"}, {"source": "above", "target": "buy"}]}
    flow_id = me.post("/api/flows", json=always_long).json()["id"]
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=5)
    execution = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper", "replayFrom": start.isoformat()}
                        ).json()["executionId"]
    run_pass(start + dt.timedelta(hours=3, minutes=1))  # three candles: bought at the second one's open
    stopped = me.post("/api/engine/stop", json={"executionId": execution, "closePosition": True}).json()
    assert (stopped["openPositions"], stopped["totalTrades"]) == (0, 1)
    curve = me.get(f"/api/flows/{flow_id}/performance").json()["equityCurve"]
    last_close_ms = int((start + dt.timedelta(hours=3)).timestamp() * 1000)
    assert curve[-1]["timestamp"] == last_close_ms, curve


def test_close_position_is_for_paper_only(api):
    from capandex.db.schema import executions

    me = api.as_user()
    execution = me.post("/api/engine/start", json={"flowId": _flow(me), "mode": "paper"}).json()["executionId"]
    with transaction() as conn:
        conn.execute(executions.update().where(executions.c.id == execution).values(mode="live"))
    response = me.post("/api/engine/stop", json={"executionId": execution, "closePosition": True})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "closePosition"
    assert me.get("/api/engine/status", params={"executionId": execution}).json()["status"] == "running"


@pytest.mark.parametrize(("body", "why"), [
    ({"replayFrom": "2999-01-01T00:00:00Z"}, "past"),
    ({"replayFrom": "last tuesday"}, "datetime"),
    ({"replayFrom": "2024-01-01T00:00:00Z", "mode": "live", "exchangeKeyId": "key_x"}, "paper"),
])
def test_replay_from_is_checked(api, body, why):
    me = api.as_user()
    response = me.post("/api/engine/start", json={"flowId": _flow(me), "mode": "paper", **body})
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "replayFrom" and why in detail["message"]
