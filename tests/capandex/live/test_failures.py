"""Permanent failures are recorded and consumed; transient ones are recorded and raised for SQS."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from capandex.db.schema import executions, notifications
from capandex.db.session import transaction
from capandex.errors import BadRequest, InvalidCredentials, RateLimited, UpstreamError, UpstreamUnavailable
from capandex.live.executions import start_execution
from capandex.live.worker import CandleNotReady, process_tick
from tests.capandex.engine.factories import price_rule_flow, random_walk
from tests.capandex.live.helpers import make_flow

CANDLES = random_walk(60, seed=3)
CANDLE = int(CANDLES.time[41])


@pytest.fixture
def execution(configure, tmp_path):
    # its own database: a running paper execution in the session's Postgres would be due in
    # other tests' replays of the past
    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'failures.db'}")
    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, price_rule_flow(0.0, 1e9))
        return start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                               now_ms=int(CANDLES.time[40]))["executionId"]


def failing(exc):
    def source(*_args):
        raise exc
    return source


def _recorded(execution_id):
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution_id)).one()
        messages = conn.execute(select(notifications.c.message).where(
            notifications.c.user_id == row.user_id, notifications.c.event == "engine_error")).scalars().all()
    return row, messages


@pytest.mark.parametrize("exc", [BadRequest("binance has no spot market 'NOPE/USDT'."),
                                 InvalidCredentials("binance rejected the API key.")], ids=lambda e: e.code)
def test_a_permanent_failure_is_recorded_and_not_raised(execution, exc):
    outcome = process_tick(execution, CANDLE, candles=failing(exc))
    assert (outcome.status, outcome.error) == ("failed", exc.code)
    row, messages = _recorded(execution)
    assert (row.consecutive_failures, row.error_count, row.last_error) == (1, 1, exc.message)
    assert len(messages) == 1 and "could not process the candle of" in messages[0]


@pytest.mark.parametrize("exc", [UpstreamUnavailable("binance timed out."), UpstreamError("binance: garbled."),
                                 RateLimited("binance is rate limiting.", retry_after=2)], ids=lambda e: e.code)
def test_a_transient_failure_is_recorded_and_raised(execution, exc):
    with pytest.raises(type(exc)):
        process_tick(execution, CANDLE, candles=failing(exc))
    row, messages = _recorded(execution)
    assert (row.consecutive_failures, row.status) == (1, "running") and len(messages) == 1


def test_a_candle_not_ready_is_raised_without_counting(execution):
    with pytest.raises(CandleNotReady):
        process_tick(execution, CANDLE, candles=failing(CandleNotReady("not yet")))
    row, messages = _recorded(execution)
    assert row.consecutive_failures == 0 and messages == []


def _obv_flow():
    flow = price_rule_flow(0.0)
    flow["nodes"].append({"id": "obv", "type": "indicator", "data": {"kind": "obv"}})
    flow["nodes"][1]["data"].pop("value")
    flow["edges"].append({"id": "e9", "source": "obv", "target": "hi", "targetHandle": "b"})
    return flow


def test_a_flow_using_obv_is_refused_at_start_naming_the_node(configure, tmp_path):
    """OBV is a running total since the first candle: no trailing window reproduces it, so paper and
    live executions could only trade on values no backtest shows. The start is a 422 naming the node."""
    from capandex.errors import ValidationFailed

    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'obv.db'}")
    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, _obv_flow())
        with pytest.raises(ValidationFailed) as info:
            start_execution(conn, user_id=user, flow_id=flow_id, mode="paper", now_ms=int(CANDLES.time[40]))
    assert info.value.status == 422
    assert info.value.details == [{"field": "data.kind", "message": "OBV cannot run in paper or live mode",
                                   "nodeId": "obv"}]


def test_an_obv_execution_of_an_earlier_release_fails_for_good_instead_of_crashing(execution):
    """An execution started before the start refused OBV: its tick is a recorded permanent failure."""
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution)).one()
        conn.execute(executions.update().where(executions.c.id == execution)
                     .values(state={**row.state, "document": {**row.state["document"], **_obv_flow()}}))
    outcome = process_tick(execution, CANDLE, candles=failing(AssertionError("candles are never fetched")))
    assert (outcome.status, outcome.error) == ("failed", "validation_error")
    row, messages = _recorded(execution)
    assert row.consecutive_failures == 1 and "OBV" in messages[0]


def test_a_run_forgotten_while_its_first_candles_download_ends_its_tick_quietly(execution):
    """A start forgets the flow's empty stopped runs (``_forget_empty_runs``), and a tick fetches its
    candles outside the lock (up to ``FILL_SECONDS`` on a first tick): the user stopped and started
    the flow meanwhile, the row was gone under the tick, and it crashed with an AttributeError."""
    from capandex.live.executions import stop_execution

    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution)).one()

    def stop_and_start_while_downloading(*_args):
        with transaction() as conn:
            stop_execution(conn, user_id=row.user_id, execution_id=execution)
            start_execution(conn, user_id=row.user_id, flow_id=row.flow_id, mode="paper",
                            now_ms=int(CANDLES.time[40]))
        return CANDLES

    outcome = process_tick(execution, CANDLE, candles=stop_and_start_while_downloading)
    assert outcome.status == "skipped"
    with transaction() as conn:
        assert conn.execute(select(executions).where(executions.c.id == execution)).first() is None


def test_a_tick_whose_history_still_downloads_is_consumed_and_one_not_ready_redelivered(execution, monkeypatch):
    """The scheduler sends a behind execution a tick every minute, so a record whose history is still
    downloading (FillTimeUp) is consumed: redelivered, it started a second download of the same chunks
    six minutes later and, after five, sat in the dead-letter queue with no flow at fault. A candle
    the exchange has not published yet is still redelivered."""
    import json

    from capandex.live import ticks
    from capandex.live.ticks import handle_batch
    from capandex.marketdata.candles import FillTimeUp
    from capandex.telemetry import Metric

    counted: dict[Metric, int] = {}

    def count(metric: Metric, value: int = 1) -> None:
        counted[metric] = counted.get(metric, 0) + value

    monkeypatch.setattr(ticks, "count", count)

    event = {"Records": [{"messageId": "m1", "body": json.dumps(
        {"executionId": execution, "candleMs": CANDLE, "mode": "paper"})}]}
    assert handle_batch(event, candles=failing(FillTimeUp("2 of 40 chunks to go"))) == {"batchItemFailures": []}
    assert counted == {Metric.TICKS_WAITING: 1, Metric.TICKS_RETRIED: 0, Metric.TICKS_PROCESSED: 0}
    redelivered = handle_batch(event, candles=failing(CandleNotReady("not yet")))
    assert redelivered == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    row, messages = _recorded(execution)
    assert (row.consecutive_failures, row.error_count, row.status, messages) == (0, 0, "running", [])


def test_a_webhook_call_for_a_run_forgotten_meanwhile_is_a_409(execution):
    """A webhook call checks its token, then asks the exchange for a price (seconds): a stop and a
    start meanwhile forget the empty run, and its claim found no row (an AttributeError, a 500)."""
    import datetime as dt

    from capandex.errors import Conflict
    from capandex.live.webhooks import _claim_and_intend

    with transaction() as conn, pytest.raises(Conflict):
        _claim_and_intend(conn, "exec_forgotten", 1, "buy", 100.0, dt.datetime.now(dt.UTC), owner=None)
