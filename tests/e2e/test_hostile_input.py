"""Hostile input through the whole API (issue 11's reproductions), on SQLite and on Postgres:
each used to answer a 500 and write a traceback; each is now a 4xx JSON error naming the field,
and nothing is stored."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert

from capandex.db.schema import flows, utcnow
from capandex.db.session import transaction

NAME = "hostile"


@pytest.fixture(params=["sqlite", "postgres"])
def api_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both databases: several of these were 500s on one of them only."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'capandex.db'}"
    return request.getfixturevalue("postgres_url")


def flow_body(data_json: str) -> str:
    """A flow whose one indicator node carries ``data_json`` verbatim (so NaN and friends survive)."""
    head = '{"name": "' + NAME + '", "nodes": [{"id": "n1", "type": "indicator", "data": '
    return head + data_json + '}], "edges": []}'


def field_error(response, status: int, field: str) -> str:
    """Assert a JSON error with ``status`` whose details name ``field``; returns the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    named = [d for d in error.get("details", []) if d["field"] == field]
    assert named, error
    return named[0]["message"]


@pytest.fixture
def user(api):
    return api.as_user()


def no_flows(user) -> bool:
    return user.get("/api/flows").json() == {"flows": []}


@pytest.fixture
def no_error_logs(caplog):
    """None of these inputs is a bug: nothing may be logged at ERROR (no traceback either)."""
    with caplog.at_level(logging.INFO):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_a_cookie_of_3000_brackets_is_a_401(api, no_error_logs) -> None:
    response = api.client.get("/api/flows", headers={"Cookie": "sb-127-auth-token=" + "[" * 3000})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("data, field, why", [
    ('{"kind": "sma", "period": NaN}', "nodes.0.data.period", "finite"),
    ('{"kind": "sma", "period": Infinity}', "nodes.0.data.period", "finite"),
    ('{"kind": "sma", "period": -Infinity}', "nodes.0.data.period", "finite"),
    ('{"kind": "sma", "period": 1e309}', "nodes.0.data.period", "finite"),
    ('{"kind": "sma", "period": 1' + "0" * 400 + "}", "nodes.0.data.period", "integer between"),
    ('{"kind": "\\udfff"}', "nodes.0.data.kind", "lone surrogate"),
    ('{"kind": "sma", "note": "a\\u0000b"}', "nodes.0.data.note", "NUL"),
    ('{"\\udfff": 1}', "nodes.0.data", "key"),
])
def test_node_data_the_database_cannot_hold_is_a_422(user, no_error_logs, data: str, field: str, why: str) -> None:
    message = field_error(user.post("/api/flows", content=flow_body(data),
                                    headers={"content-type": "application/json"}), 422, field)
    assert why in message
    assert no_flows(user)  # refused, not stored as null or truncated


def test_node_data_nested_400_deep_is_a_422(user, no_error_logs) -> None:
    deep = "{}"
    for _ in range(400):
        deep = '{"a": ' + deep + "}"
    response = user.post("/api/flows", content=flow_body(deep), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["field"].startswith("nodes.0.data.a.a") and "deeper than 32 levels" in detail["message"]
    assert no_flows(user)


def test_settings_and_updates_are_checked_too(user, no_error_logs) -> None:
    created = user.post("/api/flows", json={"name": "ok", "nodes": [], "edges": []})
    assert created.status_code == 201
    flow_id = created.json()["id"]
    field_error(user.request("PUT", f"/api/flows/{flow_id}", content='{"settings": {"initialCapital": Infinity}}',
                             headers={"content-type": "application/json"}), 422, "settings.initialCapital")
    assert user.get(f"/api/flows/{flow_id}").json()["settings"] == {}


def test_a_huge_notifications_offset_is_a_422(user, no_error_logs) -> None:
    field_error(user.get("/api/notifications", params={"offset": str(10**30)}), 422, "offset")
    assert user.get("/api/notifications", params={"offset": "1000000"}).status_code == 200


def stored_flow(user_id: uuid.UUID, data: dict) -> str:
    """A flow written before these checks existed (straight into the database, as old rows are)."""
    flow_id = "flow_" + uuid.uuid4().hex
    document = {"nodes": [{"id": "n1", "type": "indicator", "data": data},
                          {"id": "c", "type": "condition", "data": {"operator": ">", "value": 0}},
                          {"id": "buy", "type": "action", "data": {"action": "buy"}}],
                "edges": [{"id": "e1", "source": "n1", "target": "c", "targetHandle": "a"},
                          {"id": "e2", "source": "c", "target": "buy"}],
                "settings": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}}
    with transaction() as conn:
        conn.execute(insert(flows).values(id=flow_id, user_id=user_id, name=NAME, document=document,
                                          created_at=utcnow(), updated_at=utcnow()))
    return flow_id


def test_a_stored_period_of_10_to_the_400_is_a_422_for_backtests_and_starts(user, binance_env,
                                                                          no_error_logs) -> None:
    flow_id = stored_flow(user.id, {"kind": "sma", "period": 10**400})
    backtest = user.post("/api/engine/backtest", json={
        "flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
        "startDate": "2024-01-01", "endDate": "2024-01-02"})
    assert "must be in [2, 100000]" in field_error(backtest, 422, "data.period")
    start = user.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    assert "must be in [2, 100000]" in field_error(start, 422, "data.period")


def test_json_bodies_nested_past_the_parser_are_a_400(user, no_error_logs) -> None:
    response = user.post("/api/flows", content='{"a":' * 1300, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_an_unparseable_stored_value_never_reaches_the_client(user) -> None:
    """What the 422s above protect: a document that round-trips exactly."""
    document = json.loads(flow_body('{"kind": "sma", "period": 9007199254740991, "note": "\\u00e9\\ud83d\\ude00"}'))
    created = user.post("/api/flows", json=document)
    assert created.status_code == 201, created.text
    assert user.get(f"/api/flows/{created.json()['id']}").json()["nodes"][0]["data"] == document["nodes"][0]["data"]
