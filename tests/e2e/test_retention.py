"""Tables a user appends to stay bounded per user, whatever the request rate: one client started
and stopped a paper flow ~30 times a second (each execution row a copy of the flow document, up to
256 KiB, and two notifications) and ran ~39 small backtests a second, and every row was kept for
good. Now empty runs are forgotten when their flow starts again, and notifications and ended
backtests keep the newest rows per user."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from capandex.db.schema import executions
from capandex.db.session import transaction
from tests.capandex.engine.factories import sma_cross_flow

SETTINGS = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}


@pytest.fixture(params=["sqlite", "postgres"])
def api_database(request: pytest.FixtureRequest, tmp_path) -> str:
    """Both databases: the pruning statements are dialect-sensitive."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'capandex.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def user(api, binance_env):
    me = api.as_user()
    me.flow_id = me.post("/api/flows", json={"name": "F", **sma_cross_flow(), "settings": SETTINGS}).json()["id"]
    return me


def start_and_stop(user) -> str:
    started = user.post("/api/engine/start", json={"flowId": user.flow_id, "mode": "paper"})
    assert started.status_code == 200, started.text
    execution = started.json()["executionId"]
    assert user.post("/api/engine/stop", json={"executionId": execution}).status_code == 200
    return execution


def runs_of(user) -> set[str]:
    with transaction() as conn:
        return set(conn.execute(select(executions.c.id).where(executions.c.flow_id == user.flow_id)).scalars())


def test_starting_again_forgets_the_flows_empty_runs_and_keeps_the_ones_that_ran(user) -> None:
    ran = start_and_stop(user)
    with transaction() as conn:  # it processed candles: history worth keeping
        conn.execute(update(executions).where(executions.c.id == ran).values(current_tick=3))
    empty = [start_and_stop(user) for _ in range(5)]
    assert runs_of(user) == {ran, empty[-1]}  # four empty runs forgotten, one per start
    assert user.get("/api/engine/status", params={"executionId": empty[0]}).status_code == 404
    assert user.get("/api/engine/status", params={"executionId": ran}).json()["currentTick"] == 3


def test_a_failed_run_keeps_the_reason_it_failed(user) -> None:
    """Only runs the user stopped are forgotten: a run the engine failed carries its ``last_error``."""
    failed = start_and_stop(user)
    with transaction() as conn:
        conn.execute(update(executions).where(executions.c.id == failed)
                     .values(status="failed", last_error="binance rejected the API key."))
    start_and_stop(user)
    assert failed in runs_of(user)
    assert user.get("/api/engine/status", params={"executionId": failed}).json()["status"] == "failed"


def test_notifications_keep_the_newest_per_user(user, api, monkeypatch) -> None:
    from capandex.notifications import repository

    monkeypatch.setattr(repository, "MAX_KEPT", 4)
    for _ in range(4):  # eight notifications: started, stopped, …
        start_and_stop(user)
    listed = user.get("/api/notifications").json()
    assert listed["total"] == 4
    assert [n["title"].rsplit(" ", 1)[-1] for n in listed["notifications"]] == ["stopped", "started"] * 2
    other = api.as_user()  # per user: another user's notifications are not touched
    other.flow_id = other.post("/api/flows", json={"name": "G", **sma_cross_flow(), "settings": SETTINGS}).json()["id"]
    start_and_stop(other)
    assert user.get("/api/notifications").json()["total"] == 4
    assert other.get("/api/notifications").json()["total"] == 2


def test_ended_backtests_keep_the_newest_per_user(user, monkeypatch) -> None:
    from capandex.backtests import repository

    monkeypatch.setattr(repository, "MAX_KEPT", 2)
    body = {"flowId": user.flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
            "startDate": "2024-01-01", "endDate": "2024-01-03"}
    ids = []
    for _ in range(4):
        answer = user.post("/api/engine/backtest", json=body)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["backtestId"])
    # each new one dropped the oldest ended ones beyond two (the new one was still running then)
    assert [user.get(f"/api/engine/backtest/{i}").status_code for i in ids] == [404, 200, 200, 200]
    from capandex.db.schema import backtests

    with transaction() as conn:
        assert conn.execute(select(func.count()).select_from(backtests)
                            .where(backtests.c.user_id == user.id)).scalar_one() == 3
