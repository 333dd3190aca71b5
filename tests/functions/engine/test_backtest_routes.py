"""``POST /api/engine/backtest`` and ``GET /api/engine/backtest/{id}`` through the gateway on
Postgres, with candles from the loopback Binance: in-request runs, background runs with progress,
validation, ownership, exchange failures, stale runs."""

from __future__ import annotations

import datetime as dt

import pytest
from moto import mock_aws
from sqlalchemy import select, update

from capandex.backtests import wait_local
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer, server_error
from tests.utils.fixtures import with_flow

DAY = 86_400_000


@pytest.fixture
def user(api, binance_env: BinanceServer, instant_retries, configure):
    configure(CAPANDEX_BACKTEST_SYNC_BUDGET_S="10")
    return with_flow(api.as_user(), sma_cross_flow(5, 20))


def body(flow_id: str, **overrides) -> dict:
    return {"flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
            "startDate": "2024-01-01", "endDate": "2024-02-01T00:00:00Z", **overrides}


def test_small_range_completes_in_the_request(user, binance: BinanceServer) -> None:
    response = user.post("/api/engine/backtest", json=body(user.flow_id))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["backtestId"].startswith("bt_") and result["status"] == "completed"
    assert set(result["metrics"]) >= {"pnl", "pnlPercent", "winRate", "maxDrawdown", "maxDrawdownPercent",
                                      "sharpeRatio", "profitFactor", "totalTrades", "winningTrades", "losingTrades"}
    assert len(result["equityCurve"]) == 31 * 24
    assert result["equityCurve"][0] == {"timestamp": "2024-01-01T00:00:00Z", "equity": 10000.0}
    assert result["trades"] and result["metrics"]["totalTrades"] == len(result["trades"])
    again = user.get(f"/api/engine/backtest/{result['backtestId']}")
    assert again.status_code == 200 and again.json() == result
    # the same range again: no candle page fetched twice
    pages = binance.count("/api/v3/klines")
    assert user.post("/api/engine/backtest", json=body(user.flow_id)).status_code == 200
    assert binance.count("/api/v3/klines") == pages


def test_large_range_runs_in_the_background_with_progress(user, configure, binance: BinanceServer,
                                                          monkeypatch) -> None:
    from capandex.backtests import jobs

    reported: list[float] = []
    original = jobs.progress

    def spy(user_id, backtest_id, percent, *, increment=False):
        original(user_id, backtest_id, percent, increment=increment)
        reported.append(user.get(f"/api/engine/backtest/{backtest_id}").json()["progress"])

    monkeypatch.setattr(jobs, "progress", spy)
    configure(CAPANDEX_BACKTEST_SYNC_BUDGET_S="0")
    response = user.post("/api/engine/backtest", json=body(user.flow_id, timeframe="15m"))
    assert response.status_code == 202, response.text
    started = response.json()
    assert started == {"backtestId": started["backtestId"], "status": "running", "progress": 0}
    wait_local(started["backtestId"], timeout_s=30)
    done = user.get(f"/api/engine/backtest/{started['backtestId']}").json()
    assert done["status"] == "completed" and done["progress"] == 100
    curve = done["equityCurve"]  # 2,976 candles, downsampled for the API
    assert len(curve) <= 2000 and curve[0]["timestamp"] == "2024-01-01T00:00:00Z"
    assert curve[-1]["timestamp"] == "2024-01-31T23:45:00Z"
    assert done["metrics"]["totalTrades"] == len(done["trades"])
    # planned (5 %), then each fetched chunk, while the backtest was still running
    assert reported[0] == 5.0 and reported == sorted(reported) and 5.0 < reported[-1] <= 90.0


def test_background_failure_ends_failed_with_a_reason(user, configure, binance: BinanceServer) -> None:
    configure(CAPANDEX_BACKTEST_SYNC_BUDGET_S="0")
    binance.inject("/api/v3/klines", server_error(503), times=100)
    started = user.post("/api/engine/backtest", json=body(user.flow_id)).json()
    wait_local(started["backtestId"], timeout_s=30)
    failed = user.get(f"/api/engine/backtest/{started['backtestId']}").json()
    assert failed["status"] == "failed" and "could not be reached" in failed["error"]


def test_in_request_exchange_failure_is_503_and_the_row_failed(user, binance: BinanceServer) -> None:
    from sqlalchemy import select

    from capandex.db.schema import backtests
    from capandex.db.session import transaction

    binance.inject("/api/v3/klines", server_error(503), times=100)
    response = user.post("/api/engine/backtest", json=body(user.flow_id))
    assert response.status_code == 503
    with transaction() as conn:
        rows = conn.execute(select(backtests.c.status, backtests.c.error)
                            .where(backtests.c.user_id == user.id)).all()
    assert [r.status for r in rows] == ["failed"] and rows[0].error


def test_stale_running_backtest_is_reported_failed(user, configure) -> None:
    from capandex.db.schema import backtests
    from capandex.db.session import transaction

    result = user.post("/api/engine/backtest", json=body(user.flow_id)).json()
    with transaction() as conn:
        row = conn.execute(select(backtests).where(backtests.c.id == result["backtestId"])).one()
        # an in-request run may be reported dead two minutes after it started, not half an hour
        assert row.deadline_at - row.created_at == dt.timedelta(seconds=120)
        early = dt.timedelta(minutes=3)  # as if its Lambda had been cut off three minutes ago
        conn.execute(update(backtests).where(backtests.c.id == row.id).values(
            status="running", created_at=row.created_at - early, deadline_at=row.deadline_at - early))
    stale = user.get(f"/api/engine/backtest/{result['backtestId']}").json()
    assert stale["status"] == "failed" and "did not finish" in stale["error"]


@pytest.mark.parametrize(("overrides", "status", "field"), [
    ({"startDate": "yesterday"}, 422, "startDate"),
    ({"startDate": "2024-03-01"}, 422, "startDate"),
    ({"endDate": "2999-01-01"}, 422, "endDate"),
    ({"timeframe": "1m", "startDate": "2022-01-01", "endDate": "2024-01-01"}, 422, "endDate"),
    ({"timeframe": "2h"}, 422, "timeframe"),
    ({"exchange": "nasdaq"}, 400, "exchange"),
    ({"symbol": "NOPE/USDT"}, 400, "symbol"),
    ({"extra": 1}, 422, "extra"),
    ({"startDate": "1900-01-01", "endDate": "1900-02-01"}, 422, "startDate"),  # no negative epoch ms
    ({"flowId": "flow_\u0000"}, 422, "flowId"),  # Postgres refuses NUL in text: was a 500
])
def test_bad_input_names_the_field(user, overrides: dict, status: int, field: str) -> None:
    response = user.post("/api/engine/backtest", json=body(user.flow_id, **overrides))
    assert response.status_code == status, response.text
    assert field in [d["field"] for d in response.json()["error"].get("details", [])]


def test_invalid_flow_is_422_with_every_problem(user) -> None:
    broken = user.post("/api/flows", json={"name": "bad", "nodes": [{"id": "x", "type": "nope", "data": {}}],
                                           "edges": []}).json()
    response = user.post("/api/engine/backtest", json=body(broken["id"]))
    assert response.status_code == 422 and response.json()["error"]["details"]


def test_another_users_flow_and_backtest_are_404(user, api) -> None:
    result = user.post("/api/engine/backtest", json=body(user.flow_id)).json()
    other = api.as_user()
    assert other.post("/api/engine/backtest", json=body(user.flow_id)).status_code == 404
    assert other.get(f"/api/engine/backtest/{result['backtestId']}").status_code == 404
    assert user.get("/api/engine/backtest/bt_missing").status_code == 404


def test_malformed_backtest_id_is_a_4xx_naming_it(user) -> None:
    assert user.get("/api/engine/backtest/bt_%00").status_code == 400  # a NUL made Postgres fail: was a 500
    response = user.get("/api/engine/backtest/bt_$(rm)")
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["backtestId"]


def test_state_machine_that_cannot_start_leaves_the_backtest_failed(user, configure, monkeypatch) -> None:
    from sqlalchemy import select

    from capandex.db.schema import backtests
    from capandex.db.session import transaction

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    configure(CAPANDEX_BACKTEST_SYNC_BUDGET_S="0",
              CAPANDEX_BACKTEST_STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    with mock_aws():
        response = user.post("/api/engine/backtest", json=body(user.flow_id))
    assert response.status_code == 503, response.text
    with transaction() as conn:
        rows = conn.execute(select(backtests.c.status, backtests.c.error)
                            .where(backtests.c.user_id == user.id)).all()
    assert [(r.status, r.error) for r in rows] == [("failed", response.json()["error"]["message"])]


def test_requires_authentication(api) -> None:
    assert api.client.post("/api/engine/backtest", json={}).status_code == 401


def test_at_most_two_background_backtests_per_user(user, api, configure, monkeypatch) -> None:
    """The reproduction: one user queued 8 background backtests in a second and another user's
    waited behind them. Now the third running one is a 429 with Retry-After; other users are
    unaffected; a finished one frees its slot."""
    from capandex.backtests import service

    started: list[str] = []
    monkeypatch.setattr(service, "start_async", lambda backtest_id, _user: started.append(backtest_id))
    configure(CAPANDEX_BACKTEST_SYNC_BUDGET_S="0")  # everything runs in the background
    answers = [user.post("/api/engine/backtest", json=body(user.flow_id)) for _ in range(8)]
    assert [a.status_code for a in answers] == [202, 202] + [429] * 6
    refused = answers[2]
    assert refused.headers["retry-after"] == "30"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "at most 2 may run at once" in refused.json()["error"]["message"]
    assert len(started) == 2  # the refused ones created nothing and started nothing
    other = api.as_user()
    flow_id = other.post("/api/flows", json={"name": "SMA", **sma_cross_flow(5, 20)}).json()["id"]
    assert other.post("/api/engine/backtest", json=body(flow_id)).status_code == 202
    from capandex.backtests import jobs

    jobs.fail_job(started[0], user.id, "stopped by the test")  # one of the two ends
    assert user.post("/api/engine/backtest", json=body(user.flow_id)).status_code == 202
    configure(CAPANDEX_BACKTEST_SYNC_BUDGET_S="10")
    assert user.post("/api/engine/backtest", json=body(user.flow_id)).status_code == 200  # in-request: no slot


def test_at_most_three_backtests_per_user_run_in_requests_at_once(user, api, configure) -> None:
    """Each in-request run is bounded by the request budget, but not how many run at once: sixty
    concurrent ones from one user held every worker thread of `capandex serve` for a minute (another
    user's GET waited 42 s; on SQLite fourteen ended in 500s). A fourth while three run is a 429."""
    from capandex.backtests import repository as repo
    from capandex.backtests.service import IN_REQUEST_DEADLINE_S
    from capandex.db.session import transaction

    with transaction(user.id) as conn:  # three of the user's requests still computing
        running = [repo.create(conn, user_id=user.id, flow_id=user.flow_id, exchange="binance", symbol="BTC/USDT",
                               timeframe="1h", start_ms=0, end_ms=1, deadline_s=IN_REQUEST_DEADLINE_S)["id"]
                   for _ in range(3)]
    refused = user.post("/api/engine/backtest", json=body(user.flow_id))
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited"), refused.text
    assert refused.headers["retry-after"] == "5" and "at most 3 may run at once" in refused.json()["error"]["message"]
    other = api.as_user()  # per user
    flow_id = other.post("/api/flows", json={"name": "SMA", **sma_cross_flow(5, 20)}).json()["id"]
    assert other.post("/api/engine/backtest", json=body(flow_id)).status_code == 200
    from capandex.backtests import jobs

    jobs.fail_job(running[0], user.id, "its request ended")  # one finishes: a slot is free again
    assert user.post("/api/engine/backtest", json=body(user.flow_id)).status_code == 200
