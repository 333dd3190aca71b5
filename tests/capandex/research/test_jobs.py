"""The background steps themselves (SQLite, the local store, the loopback Binance): a batch run
twice and a collect run twice after a crash count every trial once; a cancel stops the loop."""

from __future__ import annotations

import json
import uuid

import pytest

from capandex.db.session import transaction
from capandex.research import jobs, service
from capandex.research import repository as repo
from capandex.research.models import OptimizeCreate
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer

SPACE = {"fast.period": {"values": [3, 6, 9]}, "slow.period": {"values": [12, 24, 48]}}


@pytest.fixture
def submitted(binance_env: BinanceServer, configure, monkeypatch):
    from capandex.exchanges import retry
    from capandex.flows.repository import create_flow
    from capandex.marketdata.store import clear_stores, get_store

    configure(CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env(), DATABASE_URL=None)
    clear_stores()
    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    monkeypatch.setattr(service, "start", lambda *_a: None)  # these tests are the background
    monkeypatch.setattr("capandex.research.runner.BATCH_CANDLE_TRIALS", 4 * 1200)  # 4 trials per batch
    user = uuid.uuid4()
    with transaction(user) as conn:
        flow = create_flow(conn, user_id=user, name="SMA", document=sma_cross_flow(5, 20))
    started = service.submit(user, OptimizeCreate(
        flowId=flow["id"], exchange="binance", symbol="BTC/USDT", timeframe="1h", startDate="2024-01-01",
        endDate="2024-02-20", space=SPACE))
    oid = started["optimizationId"]
    for chunk in jobs.plan_job(oid, user)["chunks"]:
        jobs.fetch_chunk_job(oid, user, chunk["start"])
    yield user, oid, get_store()
    clear_stores()


def row(user, oid):
    with transaction(user) as conn:
        return service.get(conn, user, oid)


def test_a_batch_and_a_collect_run_twice_count_every_trial_once(submitted) -> None:
    user, oid, store = submitted
    out = jobs.prepare_job(oid, user)
    items = json.loads(store.get(out["batchesKey"]))
    assert [len(item["items"]) for item in items] == [4, 4, 1]
    for item in items:
        jobs.batch_job(item)
    jobs.batch_job(items[0])  # its Lambda died after writing the result: Step Functions ran it again
    assert row(user, oid)["trialsDone"] == 9
    state = store.get(jobs.key(user, oid, "study/state.json"))
    collected = jobs.collect_job(oid, user, 0)
    assert collected["done"] and collected["round"] == 1
    assert jobs.collect_job(oid, user, 0) == collected  # a retried Collect after it had finished
    store.put(jobs.key(user, oid, "study/state.json"), state)  # one that crashed before saving its state
    assert jobs.collect_job(oid, user, 0) == collected
    jobs.reduce_job(oid, user)
    result = row(user, oid)
    assert (result["status"], result["evaluated"], result["trialsDone"]) == ("completed", 9, 9)
    with transaction(user) as conn:
        assert [t["number"] for t in service.trials(conn, user, oid, 0, 100)["trials"]] == list(range(9))


def test_after_a_cancel_batches_spend_nothing_and_collect_ends_the_loop(submitted) -> None:
    user, oid, store = submitted
    out = jobs.prepare_job(oid, user)
    items = json.loads(store.get(out["batchesKey"]))
    jobs.batch_job(items[0])
    service.cancel(user, oid)
    assert jobs.batch_job(items[1]) == {"batch": 1, "trials": 0, "skipped": True}
    assert store.get(jobs.key(user, oid, "rounds/0/result-1.json")) is None
    assert jobs.collect_job(oid, user, 0)["cancelled"] is True
    assert jobs.reduce_job(oid, user)["status"] == "cancelled"
    assert row(user, oid)["status"] == "cancelled" and row(user, oid)["trialsDone"] == 4


def test_a_failed_batch_leaves_its_reason_and_fails_the_next_step(submitted, monkeypatch) -> None:
    from capandex.errors import Conflict, ValidationFailed
    from capandex.research.runner import Evaluator

    user, oid, store = submitted
    out = jobs.prepare_job(oid, user)
    items = json.loads(store.get(out["batchesKey"]))

    def refused(self, batch):
        raise ValidationFailed("These candles cannot be evaluated.")

    monkeypatch.setattr(Evaluator, "__call__", refused)
    with pytest.raises(ValidationFailed):
        jobs.batch_job(items[0])
    assert row(user, oid)["error"] == "These candles cannot be evaluated."
    with pytest.raises(Conflict, match="These candles cannot be evaluated"):
        jobs.collect_job(oid, user, 0)
    with transaction(user) as conn:
        assert repo.get(conn, user_id=user, optimization_id=oid).status == repo.FAILED
