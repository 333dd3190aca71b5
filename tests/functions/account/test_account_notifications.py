"""Notifications, preferences and the multi-flow dashboard through the API (real Postgres, RLS)."""

from __future__ import annotations

import uuid

from capandex.db.session import transaction
from capandex.notifications import notify
from tests.capandex.engine.factories import sma_cross_flow


def _notify(user: uuid.UUID, event: str, n: int = 1) -> None:
    with transaction() as conn:
        for i in range(n):
            notify(conn, user_id=user, event=event, title=f"{event} {i}", message="m")


def test_list_filter_paginate_and_mark(api):
    me = api.as_user()
    _notify(me.id, "trade_executed", 3)
    _notify(me.id, "engine_error", 2)
    body = me.get("/api/notifications").json()
    assert body["total"] == 5 and len(body["notifications"]) == 5
    first = body["notifications"][0]
    assert set(first) >= {"id", "type", "title", "message", "read_at", "action_url", "created_at"}
    trades = me.get("/api/notifications", params={"type": "trade", "limit": 2}).json()
    assert trades["total"] == 3 and len(trades["notifications"]) == 2
    assert {n["type"] for n in trades["notifications"]} == {"trade"}
    assert me.get("/api/notifications", params={"type": "engine_error"}).json()["total"] == 2
    assert me.get("/api/notifications", params={"offset": 4}).json()["notifications"].__len__() == 1

    target = trades["notifications"][0]["id"]
    assert me.request("PATCH", f"/api/notifications/{target}").json() == {"success": True}
    assert me.get("/api/notifications", params={"unreadOnly": "true"}).json()["total"] == 4
    assert me.post("/api/notifications").json() == {"success": True}
    assert me.get("/api/notifications", params={"unreadOnly": "true"}).json()["total"] == 0
    assert me.delete(f"/api/notifications/{target}").json() == {"success": True}
    assert me.get("/api/notifications").json()["total"] == 4
    assert me.delete(f"/api/notifications/{target}").status_code == 404


def test_bad_query_names_the_field(api):
    me = api.as_user()
    for params, field in (({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"offset": -1}, "offset"),
                          ({"type": "bogus"}, "type"), ({"unreadOnly": "maybe"}, "unreadOnly")):
        response = me.get("/api/notifications", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["details"][0]["field"] == field


def test_another_users_notification_is_not_found(api):
    alice, bob = api.as_user(), api.as_user()
    _notify(alice.id, "engine_start")
    target = alice.get("/api/notifications").json()["notifications"][0]["id"]
    assert bob.request("PATCH", f"/api/notifications/{target}").status_code == 404
    assert bob.post(f"/api/notifications/{target}").status_code == 404
    assert bob.delete(f"/api/notifications/{target}").status_code == 404
    assert bob.get("/api/notifications").json()["total"] == 0
    assert alice.get("/api/notifications").json()["notifications"][0]["read_at"] is None


def test_preferences_default_update_and_gate(api):
    me = api.as_user()
    assert me.get("/api/profile/preferences").json() == {"notification_preferences": {
        "engine_start": True, "engine_stop": True, "trade_executed": True, "engine_error": True}}
    response = me.put("/api/profile/preferences", json={"notification_preferences": {"trade_executed": False}})
    assert response.json() == {"success": True}
    prefs = me.get("/api/profile/preferences").json()["notification_preferences"]
    assert prefs["trade_executed"] is False and prefs["engine_error"] is True
    _notify(me.id, "trade_executed")
    _notify(me.id, "engine_error")
    assert [n["event"] for n in me.get("/api/notifications").json()["notifications"]] == ["engine_error"]


def test_preferences_validation(api):
    me = api.as_user()
    cases = (({"notification_preferences": {"nope": True}}, "notification_preferences.nope"),
             ({"notification_preferences": {"engine_stop": "yes"}}, "notification_preferences.engine_stop"),
             ({"notification_preferences": {"engine_stop": 1}}, "notification_preferences.engine_stop"),
             ({}, "notification_preferences"),
             ({"notification_preferences": {}, "extra": 1}, "extra"))
    for body, field in cases:
        response = me.put("/api/profile/preferences", json=body)
        assert response.status_code == 422, body
        assert field in [d["field"] for d in response.json()["error"]["details"]]


def test_multi_flow_rows_and_aggregate(api, binance_env):
    me, other = api.as_user(), api.as_user()
    document = {**sma_cross_flow(), "settings": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}}
    running = me.post("/api/flows", json={"name": "A", **{k: document[k] for k in ("nodes", "edges", "settings")}})
    idle = me.post("/api/flows", json={"name": "B", **{k: document[k] for k in ("nodes", "edges", "settings")}})
    other.post("/api/flows", json={"name": "C", **{k: document[k] for k in ("nodes", "edges", "settings")}})
    execution = me.post("/api/engine/start", json={"flowId": running.json()["id"], "mode": "paper"}).json()
    body = me.get("/api/dashboard/multi-flow").json()
    assert [r["name"] for r in body["flows"]] == ["A", "B"]
    row = body["flows"][0]
    assert row["status"] == "running" and row["executionId"] == execution["executionId"]
    assert set(row) == {"id", "name", "status", "symbol", "exchange", "pnl", "pnlPct", "tradeCount", "winRate",
                        "errorCount", "openPositions", "executionId"}
    assert body["flows"][1]["status"] == "idle" and body["flows"][1]["id"] == idle.json()["id"]
    assert body["aggregate"] == {"totalPnl": 0.0, "totalPnlPct": 0.0, "totalTrades": 0, "runningFlows": 1,
                                 "errorFlows": 0, "totalOpenPositions": 0}


def test_an_overlong_notification_id_is_refused_not_echoed(api):
    me = api.as_user()
    for method in ("PATCH", "POST", "DELETE"):
        response = me.request(method, "/api/notifications/" + "x" * 5000)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == "notificationId"
        assert len(response.text) < 500
