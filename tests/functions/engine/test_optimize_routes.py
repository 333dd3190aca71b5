"""``/api/engine/optimize…`` through the gateway on Postgres, candles from the loopback Binance, the
background steps on ``capandex serve``'s path (a thread running the same jobs as the state
machine): results, progress, every problem at once, quotas, ownership, cancel, apply."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest

from capandex.research import service
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer
from tests.utils.fixtures import with_flow

FLOW = sma_cross_flow(5, 20, ("stop_loss", 2))
SPACE = {"fast.period": {"min": 3, "max": 9, "step": 3}, "slow.period": {"values": [12, 24, 48]},
         "where": ["fast.period < slow.period"]}
START_MS, END_MS = 1_704_067_200_000, 1_708_387_200_000  # 2024-01-01 .. 2024-02-20
SERVICE_KEYS = {"optimizationId", "status", "progress", "trialsDone", "trialsTotal"}


@pytest.fixture
def user(api, binance_env: BinanceServer, instant_retries, configure):
    configure(CAPANDEX_OPTIMIZE_WORKERS="1")
    return with_flow(api.as_user(), FLOW)


def body(flow_id: str, **overrides) -> dict:
    return {"flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
            "startDate": "2024-01-01", "endDate": "2024-02-20T00:00:00Z", "space": SPACE, **overrides}


def run(user, **overrides) -> dict:
    started = user.post("/api/engine/optimize", json=body(user.flow_id, **overrides))
    assert started.status_code == 202, started.text
    service.wait_local(started.json()["optimizationId"], timeout_s=120)
    return user.get(f"/api/engine/optimize/{started.json()['optimizationId']}").json()


def test_an_optimisation_runs_to_exactly_the_library_result(user) -> None:
    research = {"method": "tpe", "trials": 5, "seed": 3, "constraints": {"minTrades": 2},
                "walkForward": {"train": "20d", "test": "10d"}, "monteCarlo": {"resamples": 200}}
    started = user.post("/api/engine/optimize", json=body(user.flow_id, **research))
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running" and started.json()["trialsTotal"] == 5 * (1 + 3)
    oid = started.json()["optimizationId"]
    service.wait_local(oid, timeout_s=120)
    result = user.get(f"/api/engine/optimize/{oid}").json()
    assert (result["status"], result["progress"], result["trialsDone"]) == ("completed", 100.0, 20)
    assert len(result["walkForward"]["windows"]) == 3 and result["overfitting"]["pbo"]["trials"] == 5
    assert set(result["robustness"]) == {"costStress", "monteCarlo"}
    # what the service ran is what the library runs on the same candles (from the store, no exchange call)
    from capandex.marketdata import fetch_candles
    from capandex.research import optimize

    candles = fetch_candles("binance", "BTC/USDT", "1h", START_MS, END_MS)
    library = optimize(FLOW, candles, {"space": SPACE, **research})
    assert {k: v for k, v in result.items() if k not in SERVICE_KEYS} == library
    page = user.get(f"/api/engine/optimize/{oid}/trials?offset=2&limit=2").json()
    assert page["total"] == 5 and page["offset"] == 2 and [t["number"] for t in page["trials"]] == [2, 3]


def test_every_problem_is_one_422(user) -> None:
    response = user.post("/api/engine/optimize", json=body(
        user.flow_id, startDate="someday", space={"ghost.period": {"values": [3]}, "fast.period": {"min": 9, "max": 3},
                                                  "where": ["fast.period < nope.period"]},
        objective="luck", trials=0, walkForward={"train": "20d", "test": "0d"}))
    assert response.status_code == 422, response.text
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"startDate", "space.ghost.period", "space.fast.period", "space.where[0]", "objective", "trials",
                      "walkForward.test"}


def test_a_range_too_short_for_the_walk_forward_names_it(user) -> None:
    response = user.post("/api/engine/optimize", json=body(user.flow_id, walkForward={"train": "40d", "test": "20d"}))
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "walkForward", "message": "the candles span 50d, less than train + test (40d + 20d)"}]


def test_the_cost_of_a_request_is_bounded(user, configure, binance: BinanceServer) -> None:
    huge = {"fast.period": {"min": 2, "max": 1001}, "slow.period": {"min": 2, "max": 1001}}
    response = user.post("/api/engine/optimize", json=body(user.flow_id, space=huge))
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "space"
    configure(CAPANDEX_EXCHANGE_URLS=binance.exchange_urls_env(), CAPANDEX_OPTIMIZE_MAX_CPU_SECONDS="0.001",
              CAPANDEX_OPTIMIZE_MAX_TRIALS="10")
    response = user.post("/api/engine/optimize", json=body(user.flow_id, method="random", trials=6,
                                                           walkForward={"train": "20d", "test": "10d"}))
    assert response.status_code == 422
    messages = [d["message"] for d in response.json()["error"]["details"] if d["field"] == "trials"]
    assert messages[0] == "24 trials in all (walk-forward windows included); at most 10"
    assert "CPU-minutes by the cost model" in messages[1]
    assert binance.count("/api/v3/klines") == 0  # refused before the exchange was asked anything


def test_tpe_sampling_is_part_of_the_cost(user, binance: BinanceServer) -> None:
    """TPE's own work grows with the square of its trials: 89,000 TPE trials over four days of
    candles passed the cost model (the engine's part is nothing) and sampled for hours."""
    wide = {"fast.period": {"min": 2, "max": 300}, "slow.period": {"min": 2, "max": 300}}
    four_days = body(user.flow_id, space=wide, method="tpe", endDate="2024-01-05")
    response = user.post("/api/engine/optimize", json={**four_days, "trials": 89_000})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == [{"field": "trials", "message": (
        "tpe evaluates at most 2,000 sets (its sampler's work grows with the square of the trials); use random or "
        "grid for more")}]
    # 2,000 TPE trials in each of 96 walk-forward windows and the whole range: ~2.2 CPU-hours of sampling alone
    windows = user.post("/api/engine/optimize", json=body(user.flow_id, space=wide, method="tpe", trials=2000,
                                                          walkForward={"train": "10d", "test": "10h"}))
    assert windows.status_code == 422, windows.text
    (detail,) = windows.json()["error"]["details"]
    assert detail["field"] == "trials" and "plus TPE's sampling" in detail["message"]
    assert binance.count("/api/v3/klines") == 0


def test_one_running_optimisation_per_user(user, monkeypatch) -> None:
    monkeypatch.setattr(service, "start", lambda *_a: None)  # the first one stays running
    first = user.post("/api/engine/optimize", json=body(user.flow_id))
    assert first.status_code == 202
    second = user.post("/api/engine/optimize", json=body(user.flow_id))
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 30
    assert first.json()["optimizationId"] in second.json()["error"]["message"]
    cancelled = user.delete(f"/api/engine/optimize/{first.json()['optimizationId']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert user.delete(f"/api/engine/optimize/{first.json()['optimizationId']}").status_code == 409
    assert user.post("/api/engine/optimize", json=body(user.flow_id)).status_code == 202


def test_another_users_optimisation_is_404(user, api) -> None:
    result = run(user)
    oid, other = result["optimizationId"], api.as_user()
    assert other.post("/api/engine/optimize", json=body(user.flow_id)).status_code == 404
    for response in (other.get(f"/api/engine/optimize/{oid}"), other.delete(f"/api/engine/optimize/{oid}"),
                     other.get(f"/api/engine/optimize/{oid}/trials"), other.post(f"/api/engine/optimize/{oid}/apply")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_cancel_stops_spending(user, monkeypatch) -> None:
    from capandex.research import jobs

    evaluated: list[int] = []
    real_batch = jobs.batch_job

    def batch_then_cancel(item):
        out = real_batch(item)
        evaluated.append(out["trials"])
        if len(evaluated) == 1:
            assert user.delete(f"/api/engine/optimize/{item['optimizationId']}").status_code == 200
        return out

    monkeypatch.setattr(jobs, "batch_job", batch_then_cancel)
    monkeypatch.setattr("capandex.research.runner.BATCH_CANDLE_TRIALS", 2_400)  # 2 trials per batch
    result = run(user)
    assert result["status"] == "cancelled" and "best" not in result
    assert evaluated == [2, 0, 0, 0, 0]  # 9 trials in 5 batches: the 4 after the cancel spent nothing
    assert result["trialsDone"] == 2 and result["trialsTotal"] == 9


def test_the_winner_or_a_trial_is_applied_as_a_new_version(user) -> None:
    result = run(user)
    oid = result["optimizationId"]
    applied = user.post(f"/api/engine/optimize/{oid}/apply")
    assert applied.status_code == 201, applied.text
    assert applied.json()["params"] == result["best"]["params"] and applied.json()["version"] == 2
    flow = user.get(f"/api/flows/{user.flow_id}").json()
    periods = {n["id"]: n["data"].get("period") for n in flow["nodes"]}
    assert (periods["fast"], periods["slow"]) == (result["best"]["params"]["fast.period"],
                                                  result["best"]["params"]["slow.period"])
    versions = user.get(f"/api/flows/{user.flow_id}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["change_description"].startswith(f"Applied optimisation {oid}: fast.period=")
    second = user.post(f"/api/engine/optimize/{oid}/apply", json={"trial": 0})
    assert second.status_code == 201 and second.json()["params"] == {"fast.period": 3, "slow.period": 12}
    assert user.post(f"/api/engine/optimize/{oid}/apply", json={"trial": 99}).status_code == 404


def test_a_stale_running_optimisation_is_reported_failed(user, monkeypatch) -> None:
    import datetime as dt

    from sqlalchemy import update

    from capandex.db.schema import optimizations
    from capandex.db.session import transaction

    monkeypatch.setattr(service, "start", lambda *_a: None)
    oid = user.post("/api/engine/optimize", json=body(user.flow_id)).json()["optimizationId"]
    with transaction() as conn:  # as its dead worker would leave it (users cannot write optimisations)
        conn.execute(update(optimizations).where(optimizations.c.id == oid)
                     .values(deadline_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)))
    result = user.get(f"/api/engine/optimize/{oid}").json()
    assert result["status"] == "failed" and "did not finish in time" in result["error"]
    assert user.post("/api/engine/optimize", json=body(user.flow_id)).status_code == 202  # no longer blocks


def test_capandex_serve_runs_the_batches_in_a_process_pool(user, configure, binance: BinanceServer,
                                                           monkeypatch) -> None:
    from capandex.research import jobs

    pools = []
    monkeypatch.setattr(jobs, "batch_size", lambda candles: 2)  # three batches a round
    monkeypatch.setattr(jobs, "POOL_CANDLE_TRIALS", 0)  # and work enough to be worth a pool
    monkeypatch.setattr(jobs, "ProcessPoolExecutor", lambda *a, **kw: pools.append(1) or ProcessPoolExecutor(*a, **kw))
    configure(CAPANDEX_EXCHANGE_URLS=binance.exchange_urls_env(), CAPANDEX_OPTIMIZE_WORKERS="2")
    pooled = run(user, method="random", trials=6, seed=1)
    assert pools == [1]
    configure(CAPANDEX_EXCHANGE_URLS=binance.exchange_urls_env(), CAPANDEX_OPTIMIZE_WORKERS="1")
    alone = run(user, method="random", trials=6, seed=1)
    assert pooled["status"] == "completed" and pooled["trialsDone"] == 6
    assert {k: v for k, v in pooled.items() if k != "optimizationId"} == \
        {k: v for k, v in alone.items() if k != "optimizationId"}


@pytest.mark.parametrize("batch", [500, 2])
def test_small_work_runs_without_starting_a_pool(user, configure, binance: BinanceServer, monkeypatch, batch) -> None:
    """A pool's interpreters take seconds to start: a round of one batch, or a whole run under
    POOL_CANDLE_TRIALS (here 6 trials × 1,200 candles, in three batches of 2), runs in the
    optimisation's own thread (an optimisation of 171 trials over 6,600 candles took 5-9 s, its
    trials 0.3 s)."""
    from capandex.research import jobs

    monkeypatch.setattr(jobs, "batch_size", lambda candles: batch)
    monkeypatch.setattr(jobs, "ProcessPoolExecutor", lambda *a, **kw: pytest.fail("a pool for small work"))
    configure(CAPANDEX_EXCHANGE_URLS=binance.exchange_urls_env(), CAPANDEX_OPTIMIZE_WORKERS="2")
    assert run(user, method="random", trials=6, seed=1)["status"] == "completed"
