"""The backtest state machine: its definition file is well-formed and wired to real handlers in
template.yaml; executed by moto's ASL interpreter with the tasks in-process (tests/utils/
stepfunctions.py), started by the engine's own code, it completes a backtest, retries a task that
ran out of memory, and catches a failure into the backtest's failed status; the tasks, driven one
by one, complete a backtest or mark it failed with a reason."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from capandex import errors
from capandex.backtests import service
from capandex.exchanges.retry import BACKGROUND
from capandex.marketdata.chunks import chunk_starts
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer, server_error
from tests.utils.stepfunctions import (
    StateMachines,
    all_states,
    check_tasks_are_handlers,
    check_well_formed,
    deployed,
    lambda_module,
    load_template,
)

ROOT = Path(__file__).resolve().parents[3]
ASL = ROOT / "statemachines" / "backtest.asl.json"
DAY = 86_400_000
T0 = 1_704_067_200_000


def handlers_module():
    return lambda_module(ROOT / "functions" / "backtest", "handlers")


def test_definition_is_well_formed() -> None:
    definition = json.loads(ASL.read_text())
    check_well_formed(definition)
    states = definition["States"]
    assert states["FetchChunks"]["MaxConcurrencyPath"] == "$.maxConcurrency"
    assert states["FetchChunks"]["ItemsPath"] == "$.chunks"
    # nothing can end "running": every task state catches everything into MarkFailed
    for name in ("Plan", "FetchChunks", "Run"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                          "Next": "MarkFailed"}]
    # exchange reads retry inside the tasks (capandex.exchanges.retry): a Retry on an exchange error
    # here would multiply the requests one failing page costs
    for name, state, _scope in all_states(definition):
        for retry in state.get("Retry", []):
            assert all(error.startswith("Lambda.") for error in retry["ErrorEquals"]) or name == "MarkFailed", name


def test_every_task_resource_is_a_real_handler_in_the_template() -> None:
    resources = load_template(ROOT)["Resources"]
    machine = resources["BacktestStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachines/backtest.asl.json"
    assert check_tasks_are_handlers(ROOT, "BacktestStateMachine", "functions/backtest/") == set(
        machine["DefinitionSubstitutions"])
    engine = resources["EngineFunction"]["Properties"]
    assert engine["Environment"]["Variables"]["CAPANDEX_BACKTEST_STATE_MACHINE_ARN"] == {"Ref": "BacktestStateMachine"}


@mock_aws
def test_start_execution_names_it_after_the_backtest() -> None:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    definition = ASL.read_text()
    for key in ("BacktestPlanFunctionArn", "BacktestFetchChunkFunctionArn", "BacktestRunFunctionArn",
                "BacktestFailFunctionArn"):
        definition = definition.replace("${" + key + "}", f"arn:aws:lambda:us-east-1:123456789012:function:{key}")
    arn = sfn.create_state_machine(name="backtest", definition=definition,
                                   roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    user = uuid.uuid4()
    execution = service.start_execution(arn, "bt_123", user, client=sfn)
    described = sfn.describe_execution(executionArn=execution)
    assert described["name"] == "bt_123"
    assert json.loads(described["input"]) == {"backtestId": "bt_123", "userId": str(user)}


# -- the tasks, driven as the state machine drives them --------------------------------------------
@pytest.fixture
def submitted(binance_env: BinanceServer, configure, monkeypatch):
    """A backtest row (and its request snapshot) on SQLite, ready for the tasks."""
    from capandex.backtests import jobs
    from capandex.exchanges import retry
    from capandex.marketdata.store import clear_stores

    configure(CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env(), DATABASE_URL=None,
              CAPANDEX_BACKTEST_SYNC_BUDGET_S="0")
    clear_stores()
    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    monkeypatch.setattr(service, "start_async", lambda *_a: None)  # the "state machine" is this test
    user, backtest_id = _submit_large_backtest()
    yield user, backtest_id, jobs
    clear_stores()


def _submit_large_backtest() -> tuple[uuid.UUID, str]:
    """A new user's backtest over 19 days of 1m candles: too large for the request (budget 0), so
    the engine answers 202 and starts it in the background."""
    from capandex.db.session import transaction
    from capandex.flows.repository import create_flow

    user = uuid.uuid4()
    with transaction(user) as conn:
        flow = create_flow(conn, user_id=user, name="SMA", document=sma_cross_flow(5, 20))
    submission = service.submit(user, service.BacktestCreate(
        flowId=flow["id"], exchange="binance", symbol="ETH/USDT", timeframe="1m",
        startDate="2024-01-01T00:00:00Z", endDate="2024-01-20T00:00:00Z"))
    assert not submission.completed
    return user, submission.backtest_id


def test_tasks_plan_map_run(submitted, binance_env: BinanceServer) -> None:
    from capandex.db.session import transaction

    user, backtest_id, _jobs = submitted
    handlers = handlers_module()
    event = {"backtestId": backtest_id, "userId": str(user)}
    planned = handlers.plan(event)
    assert planned["maxConcurrency"] == 5  # binance: 50 ms rate limit
    assert [c["start"] for c in planned["chunks"]] == chunk_starts("1m", T0, T0 + 19 * DAY)
    assert all(c["backtestId"] == backtest_id and c["progressStep"] == 85 / 4 for c in planned["chunks"])
    binance_env.inject("/api/v3/klines", server_error(503), times=BACKGROUND.retries + 1)
    with pytest.raises(errors.UpstreamUnavailable):  # retried in the task; the Map does not retry it
        handlers.fetch_chunk(planned["chunks"][0])
    assert binance_env.count("/api/v3/klines") == 6  # one failing page: 6 requests, not 3 × 5
    for item in planned["chunks"]:
        assert handlers.fetch_chunk(item)["pages"] == 12
    pages = binance_env.count("/api/v3/klines")
    assert handlers.run(planned) == {"backtestId": backtest_id, "status": "completed"}
    assert binance_env.count("/api/v3/klines") == pages  # run found every chunk in the store
    with transaction(user) as conn:
        result = service.get(conn, user, backtest_id)
    assert result["status"] == "completed" and result["progress"] == 100.0
    assert len(result["equityCurve"]) <= 2000 and result["metrics"]["totalTrades"] == len(result["trades"])


def test_one_failing_page_costs_six_requests_in_capandex_serves_pool(submitted, binance_env: BinanceServer) -> None:
    """The in-process path runs the same steps without a loop of its own around them: a page that
    keeps failing costs the background patience's 6 requests (it cost 4 chunk attempts × 3 = 12),
    then the backtest is failed with the exchange's message."""
    from capandex.db.session import transaction

    user, backtest_id, jobs = submitted
    binance_env.inject("/api/v3/klines", server_error(503), times=100)
    jobs.run_local(backtest_id, user)
    assert binance_env.count("/api/v3/klines") == BACKGROUND.retries + 1 == 6
    with transaction(user) as conn:
        failed = service.get(conn, user, backtest_id)
    assert failed["status"] == "failed" and "could not be reached" in failed["error"]


def test_fail_task_keeps_capandex_messages_and_hides_bugs(submitted) -> None:
    from capandex.db.session import transaction

    user, backtest_id, _jobs = submitted
    handlers = handlers_module()
    cause = json.dumps({"errorType": "UpstreamUnavailable", "errorMessage": "binance could not be reached."})
    handlers.fail({"backtestId": backtest_id, "userId": str(user),
                   "error": {"Error": "UpstreamUnavailable", "Cause": cause}})
    with transaction(user) as conn:
        assert service.get(conn, user, backtest_id)["error"] == "binance could not be reached."
    assert "internal error" in handlers.tasks.failure_reason({"error": {
        "Error": "KeyError", "Cause": json.dumps({"errorType": "KeyError", "errorMessage": "secret-ish"})}})
    assert "too long" in handlers.tasks.failure_reason({"error": {"Error": "States.Timeout", "Cause": ""}})


# -- the state machine itself, run by moto's ASL interpreter ---------------------------------------
BUCKET = "capandex-data-test"


@pytest.fixture
def machines(binance_env: BinanceServer, configure, monkeypatch):
    """The template's backtest state machine under the interpreter; the engine starts executions of it."""
    with deployed(ROOT, "BacktestStateMachine", bucket=BUCKET, monkeypatch=monkeypatch) as machines:
        configure(CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env(), DATABASE_URL=None,
                  CAPANDEX_BACKTEST_SYNC_BUDGET_S="0", CAPANDEX_DATA_BUCKET=BUCKET,
                  CAPANDEX_BACKTEST_STATE_MACHINE_ARN=machines.arn)
        yield machines


def _submit_and_wait(machines: StateMachines):
    """POST's path: the backtest is too large for the request, so the engine starts the machine."""
    from capandex.db.session import transaction

    user, backtest_id = _submit_large_backtest()
    execution = machines.wait(machines.execution_arn(backtest_id))  # named after the backtest
    with transaction(user) as conn:
        row = service.get(conn, user, backtest_id)
    return user, backtest_id, execution, row


def test_the_state_machine_completes_a_backtest(machines: StateMachines, binance_env: BinanceServer) -> None:
    user, backtest_id, execution, row = _submit_and_wait(machines)
    assert (execution.status, execution.output) == ("SUCCEEDED", {"backtestId": backtest_id, "status": "completed"})
    assert row["status"] == "completed" and row["progress"] == 100.0 and row["metrics"]["totalTrades"] > 0
    assert machines.lambdas.calls == {"BacktestPlanFunction": 1, "BacktestFetchChunkFunction": 4,
                                      "BacktestRunFunction": 1}  # the Map fetched each chunk once
    assert binance_env.count("/api/v3/klines") == 4 * 12  # and Run found every chunk in S3
    keys = {o["Key"] for o in boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert f"backtests/{user}/{backtest_id}/result.json" in keys
    assert len([k for k in keys if k.startswith("candles/v1/binance/ETH_USDT/1m/")]) == 4


def test_a_task_that_ran_out_of_memory_is_retried(machines: StateMachines, binance_env: BinanceServer) -> None:
    def out_of_memory(_event: dict) -> None:
        raise MemoryError

    machines.fail_next("BacktestFetchChunkFunction", out_of_memory)
    binance_env.inject("/api/v3/klines", server_error(503), times=2)  # absorbed inside the task
    _user, _backtest_id, execution, row = _submit_and_wait(machines)
    assert execution.status == "SUCCEEDED" and row["status"] == "completed"
    failures = [e["lambdaFunctionFailedEventDetails"]["error"] for e in execution.events("LambdaFunctionFailed")]
    assert failures == ["Lambda.Unknown"]  # retried by the Map's Retry, then it succeeded
    assert machines.lambdas.calls["BacktestFetchChunkFunction"] == 5 and len(machines.waits) == 1


def test_an_exchange_that_stays_down_ends_the_backtest_failed(machines: StateMachines,
                                                             binance_env: BinanceServer) -> None:
    binance_env.inject("/api/v3/klines", server_error(503), times=1000)
    _user, _backtest_id, execution, row = _submit_and_wait(machines)
    assert (execution.status, execution.error) == ("FAILED", "BacktestFailed")
    assert row["status"] == "failed" and "binance could not be reached" in row["error"]
    assert machines.lambdas.calls.get("BacktestRunFunction") is None
    assert machines.lambdas.calls["BacktestFailFunction"] == 1
    assert machines.waits == []  # an exchange error is retried inside the task, never by the machine
