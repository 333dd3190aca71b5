"""The optimisation state machine, executed by moto's ASL interpreter (its Distributed Map
included) with every Lambda task routed in-process to the handler template.yaml names
(tests/utils/stepfunctions.py), started by the service's own code against moto's S3: it
completes an optimisation with the library's result, re-runs a batch that ran out of memory
without counting it twice, and ends a failure ``failed`` with its reason.

What moto's interpreter does *not* do (checked here so a moto upgrade that adds it is noticed):
its ``ResultWriter`` writes only ``manifest.json``, with empty ``ResultFiles`` (AWS also writes
``SUCCEEDED_0.json`` … with every child's output), and it evaluates ``ResultWriter.Parameters``
paths against the Map's results instead of its input — so the definition gives the bucket and
prefix as literals, and the tasks write their results under their own keys (the design needs
nothing from the ResultWriter's files)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

from capandex import errors
from capandex.research import service
from capandex.research.models import OptimizeCreate
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer
from tests.utils.stepfunctions import (
    StateMachines,
    check_tasks_are_handlers,
    check_well_formed,
    deployed,
    load_template,
)

ROOT = Path(__file__).resolve().parents[3]
ASL = ROOT / "statemachines" / "optimize.asl.json"
BUCKET = "capandex-optimize-test"
FLOW = sma_cross_flow(5, 20, ("stop_loss", 2))
RESEARCH = {"space": {"fast.period": {"min": 3, "max": 9, "step": 3}, "slow.period": {"values": [12, 24, 48]}},
            "method": "tpe", "trials": 6, "seed": 4, "walkForward": {"train": "20d", "test": "10d"}}


def test_definition_is_well_formed_and_wired_to_real_handlers() -> None:
    definition = json.loads(ASL.read_text())
    check_well_formed(definition)
    states = definition["States"]
    evaluate = states["Evaluate"]
    assert evaluate["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert evaluate["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert evaluate["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert evaluate["MaxConcurrencyPath"] == "$.maxConcurrency"
    assert "Lambda.Unknown" in evaluate["ItemProcessor"]["States"]["EvaluateBatch"]["Retry"][0]["ErrorEquals"]
    for name in ("Plan", "FetchChunks", "Prepare", "Evaluate", "Collect", "Reduce"):  # nothing ends "running"
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                          "Next": "MarkFailed"}]
    used = check_tasks_are_handlers(ROOT, "OptimizeStateMachine", "functions/optimize/")
    substitutions = load_template(ROOT)["Resources"]["OptimizeStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert used | {"DataBucketName"} == set(substitutions)


@pytest.fixture
def machines(binance_env: BinanceServer, configure, monkeypatch):
    with deployed(ROOT, "OptimizeStateMachine", bucket=BUCKET, monkeypatch=monkeypatch,
                  values={"DataBucketName": BUCKET}) as machines:
        configure(CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env(), DATABASE_URL=None,
                  CAPANDEX_DATA_BUCKET=BUCKET, CAPANDEX_OPTIMIZE_STATE_MACHINE_ARN=machines.arn,
                  CAPANDEX_OPTIMIZE_MAX_CONCURRENCY="3")
        yield machines


def submit_and_wait(machines: StateMachines, **research):
    from capandex.db.session import transaction
    from capandex.flows.repository import create_flow

    user = uuid.uuid4()
    with transaction(user) as conn:
        flow = create_flow(conn, user_id=user, name="SMA", document=FLOW)
    started = service.submit(user, OptimizeCreate(
        flowId=flow["id"], exchange="binance", symbol="ETH/USDT", timeframe="1h", startDate="2024-01-01T00:00:00Z",
        endDate="2024-02-20T00:00:00Z", **(RESEARCH | research)))
    execution = machines.wait(machines.execution_arn(started["optimizationId"]), timeout_s=120)
    with transaction(user) as conn:
        row = service.get(conn, user, started["optimizationId"])
    return user, execution, row


def test_the_state_machine_completes_an_optimisation_with_the_library_result(machines: StateMachines) -> None:
    from capandex.marketdata import fetch_candles
    from capandex.research import optimize

    user, execution, row = submit_and_wait(machines)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert (row["status"], row["trialsDone"], row["trialsTotal"]) == ("completed", 24, 24)
    candles = fetch_candles("binance", "ETH/USDT", "1h", 1_704_067_200_000, 1_708_387_200_000)
    library = optimize(FLOW, candles, RESEARCH)
    assert {k: v for k, v in row.items() if k not in {"optimizationId", "status", "progress", "trialsDone",
                                                       "trialsTotal"}} == library
    calls = machines.lambdas.calls
    # TPE learns between rounds: 6 trials per scope in rounds of 8 → one Evaluate (4 batches, one per scope)
    # then a Collect that finds every search done
    assert calls["OptimizeBatchFunction"] == 4 and calls["OptimizeCollectFunction"] == 1
    assert calls["OptimizeFetchChunkFunction"] >= 1 and calls["OptimizeReduceFunction"] == 1
    s3 = boto3.client("s3", region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"optimizations/{user}/{row['optimizationId']}/{name}" for name in
            ("result.json", "trials.npz", "rounds/0/batches.json", "rounds/0/result-3.json")} <= keys
    manifest = [k for k in keys if k.startswith("optimizations/map-runs/") and k.endswith("manifest.json")]
    assert len(manifest) == 1  # moto's ResultWriter: the manifest only, with no result files listed
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=manifest[0])["Body"].read())["ResultFiles"]["SUCCEEDED"] == []


def test_a_batch_that_ran_out_of_memory_is_retried_and_counted_once(machines: StateMachines) -> None:
    def out_of_memory(_event: dict) -> None:
        raise MemoryError

    machines.fail_next("OptimizeBatchFunction", out_of_memory)
    _user, execution, row = submit_and_wait(machines, method="grid", walkForward=None)
    assert execution.status == "SUCCEEDED" and row["status"] == "completed"
    # the retry happened inside the Map Run's child execution (its history is its own, as in AWS):
    # one back-off wait, and the batch's function invoked twice
    assert machines.lambdas.calls["OptimizeBatchFunction"] == 2 and len(machines.waits) == 1  # one batch of 9
    assert (row["trialsDone"], row["evaluated"]) == (9, 9)


def test_a_failing_batch_ends_the_optimisation_failed_with_its_reason(machines: StateMachines, monkeypatch) -> None:
    from capandex.research.runner import Evaluator

    def refused(self, batch):
        raise errors.ValidationFailed("The candles are not what the batch expected.")

    monkeypatch.setattr(Evaluator, "__call__", refused)
    _user, execution, row = submit_and_wait(machines, method="grid", walkForward=None)
    # moto tolerates a failed Distributed Map item (AWS fails the Map: States.ExceedToleratedFailureThreshold);
    # the batch recorded why before raising, and Collect ends the execution failed either way
    assert execution.events("MapRunSucceeded") and machines.lambdas.calls.get("OptimizeCollectFunction") == 1
    assert (execution.status, execution.error) == ("FAILED", "OptimizationFailed")
    assert row["status"] == "failed" and row["error"] == "The candles are not what the batch expected."
    assert machines.lambdas.calls.get("OptimizeReduceFunction") is None
