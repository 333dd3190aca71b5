"""The tick Lambdas end to end: EventBridge event → scheduler → SQS (moto) → worker → loopback Binance."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from moto import mock_aws

from capandex.db.session import transaction
from capandex.live.executions import execution_status, start_execution
from tests.capandex.engine.factories import sma_cross_flow
from tests.capandex.live.helpers import make_flow
from tests.utils.stepfunctions import lambda_module

ROOT = Path(__file__).resolve().parents[3]
EVENT_TIME = "2025-01-15T10:31:00Z"


def _load(name: str):
    return lambda_module(ROOT / "functions" / "ticks", name)


@pytest.fixture
def queue(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="ticks", Attributes={"VisibilityTimeout": "360"})["QueueUrl"]
        yield sqs, url


def _receive(sqs, url):
    """Every message in the queue (the session database holds other tests' executions too)."""
    messages, batch = [], True
    while batch:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        messages += batch
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "eventSource": "aws:sqs"} for m in messages]}


def test_schedule_enqueue_and_work(binance_env, configure, postgres_url, queue):
    sqs, url = queue
    configure(DATABASE_URL=postgres_url, CAPANDEX_TICK_QUEUE_URL=url,
              CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env())
    now_ms = int(dt.datetime.fromisoformat(EVENT_TIME.replace("Z", "+00:00")).timestamp() * 1000)
    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, sma_cross_flow(3, 8), timeframe="1m")
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                    now_ms=now_ms - 30 * 60_000)["executionId"]
    event = json.loads((ROOT / "events" / "ticks" / "scheduled.json").read_text())
    assert _load("scheduler").handler(event, None)["enqueued"] >= 1
    batch = _receive(sqs, url)
    mine = [r for r in batch["Records"] if json.loads(r["body"])["executionId"] == execution]
    # the newest settled candle: opened 10:29, closed 10:30, served by market data from 10:31
    assert len(mine) == 1 and json.loads(mine[0]["body"])["candleMs"] == now_ms - 120_000
    result = _load("worker").handler({"Records": mine + mine}, None)  # a duplicate inside the batch too
    assert result == {"batchItemFailures": []}
    with transaction() as conn:
        status = execution_status(conn, user_id=user, execution_id=execution)
    assert status["currentTick"] == 29  # the 29 candles settled since the start, each once


def test_every_due_tick_is_enqueued_in_parallel_batches(binance_env, configure, queue, monkeypatch,
                                                        tmp_path) -> None:
    """25 due ticks: three SendMessageBatch calls (10, 10, 5) in flight together, every message sent
    once. One after another, 10,000 flows' 1,000 calls enqueued the last tick ~15 s after the first."""
    import threading
    import time

    from capandex.live import ticks

    sqs, url = queue
    # a database of its own: the session's holds other tests' live executions, whose ticks SQS delays
    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'ticks.db'}", CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env())
    now_ms = int(dt.datetime.fromisoformat(EVENT_TIME.replace("Z", "+00:00")).timestamp() * 1000)
    user = uuid.uuid4()
    with transaction() as conn:
        mine = {start_execution(conn, user_id=user, mode="paper", now_ms=now_ms - 10 * 60_000, flow_id=make_flow(
            conn, user, sma_cross_flow(3, 8), timeframe="1m"))["executionId"] for _ in range(25)}
    sizes, in_flight, most, lock, send = [], 0, 0, threading.Lock(), sqs.send_message_batch

    def spying(**kwargs):
        nonlocal in_flight, most
        with lock:
            sizes.append(len(kwargs["Entries"]))
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.05)  # SQS's own latency: the other calls are under way meanwhile
        try:
            return send(**kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(sqs, "send_message_batch", spying)
    enqueued = ticks.schedule(now_ms=now_ms, queue_url=url, sqs=sqs)
    sent = [json.loads(r["body"])["executionId"] for r in _receive(sqs, url)["Records"]]
    assert sorted(sent) == sorted(mine) and enqueued == 25  # each once
    assert sorted(sizes) == [5, 10, 10] and most == 3

    def refused_once(**kwargs):  # SQS refuses one call of the next pass: the others still go
        if len(kwargs["Entries"]) == 5:
            raise RuntimeError("throttled")
        return send(**kwargs)

    monkeypatch.setattr(sqs, "send_message_batch", refused_once)
    with pytest.raises(RuntimeError, match="throttled"):
        ticks.schedule(now_ms=now_ms, queue_url=url, sqs=sqs)
    assert len(_receive(sqs, url)["Records"]) == 20


def test_failed_records_are_reported(binance_env, configure, postgres_url, queue):
    configure(DATABASE_URL=postgres_url, CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env())
    user = uuid.uuid4()
    future = int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    with transaction() as conn:
        flow_id = make_flow(conn, user, sma_cross_flow(3, 8), timeframe="1m")
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper")["executionId"]
    event = {"Records": [
        {"messageId": "not-ready", "body": json.dumps({"executionId": execution, "candleMs": future})},
        {"messageId": "garbled", "body": "{"},
        *json.loads((ROOT / "events" / "ticks" / "sqs_batch.json").read_text())["Records"],  # unknown ids
    ]}
    assert _load("worker").handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "not-ready"}]}


def test_a_permanent_failure_is_consumed_and_a_transient_one_redelivered(binance_env, configure, postgres_url):
    """SQS would redeliver a listed record up to 5 times, then dead-letter it: only a tick that
    can still succeed is listed. The permanent failure is recorded instead."""
    from sqlalchemy import select

    from capandex.db.schema import executions, notifications

    configure(DATABASE_URL=postgres_url, CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env())
    user = uuid.uuid4()
    future = int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    with transaction() as conn:
        started = {symbol: start_execution(conn, user_id=user, mode="paper", flow_id=make_flow(
            conn, user, sma_cross_flow(3, 8), timeframe="1m", symbol=symbol))["executionId"]
            for symbol in ("BTC/USDT", "NOPE/USDT")}  # NOPE/USDT: delisted since it started
    event = {"Records": [{"messageId": symbol, "body": json.dumps({"executionId": execution, "candleMs": future})}
                         for symbol, execution in started.items()]}
    assert _load("worker").handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "BTC/USDT"}]}
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == started["NOPE/USDT"])).one()
        errors = conn.execute(select(notifications.c.message).where(
            notifications.c.user_id == user, notifications.c.event == "engine_error")).scalars().all()
    assert (row.status, row.consecutive_failures) == ("running", 1)
    assert len(errors) == 1 and "NOPE/USDT" in errors[0]


def test_records_the_invocation_has_no_time_for_are_redelivered_untouched(binance_env, configure, postgres_url,
                                                                         monkeypatch):
    """Lambda would end an invocation that outlasts its timeout and redeliver the whole batch, the
    ticks it finished too: the worker starts a record only while a key-budget wait and the work
    after it still fit, and hands the rest back. Here each tick takes 15 s of a 60 s invocation."""
    from capandex.live import budget, ticks

    configure(DATABASE_URL=postgres_url, CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env())
    now_ms = int(dt.datetime.fromisoformat(EVENT_TIME.replace("Z", "+00:00")).timestamp() * 1000)
    user = uuid.uuid4()
    with transaction() as conn:
        started = [start_execution(conn, user_id=user, mode="paper", now_ms=now_ms - 30 * 60_000, flow_id=make_flow(
            conn, user, sma_cross_flow(3, 8), timeframe="1m"))["executionId"] for _ in range(3)]
    clock = [1000.0]
    monkeypatch.setattr(ticks, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    process_tick = ticks.process_tick

    def fifteen_seconds(*args, **kwargs):
        try:
            return process_tick(*args, **kwargs)
        finally:
            clock[0] += 15.0

    monkeypatch.setattr(ticks, "process_tick", fifteen_seconds)
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 60_000)
    event = {"Records": [{"messageId": f"m{i}", "body": json.dumps({"executionId": e, "candleMs": now_ms - 120_000})}
                         for i, e in enumerate(started)]}
    assert _load("worker").handler(event, context) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    with transaction() as conn:
        ticked = [execution_status(conn, user_id=user, execution_id=e)["currentTick"] for e in started]
    assert ticked == [29, 29, 0]  # 45 s were left for m1 (>= 35), 30 s for m2: not started
    assert ticks.RECORD_RESERVE_S == budget.MAX_WAIT_S + budget.FINISH_RESERVE_S == 35.0
