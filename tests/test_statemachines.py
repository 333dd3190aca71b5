"""Every state machine of template.yaml, as operated: each one is executed by moto's ASL interpreter
somewhere in the suite; none can run forever or end ``running``; Lambda's own faults (throttling,
service errors, a crashed or timed-out function) are retried with backoff; every execution is
logged and traced, its role only invokes its own functions.

What each machine does with real handlers is tested next to its service:
``tests/capandex/backtests/test_statemachine.py`` and ``tests/capandex/research/test_statemachine.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.utils import sam
from tests.utils.stepfunctions import all_states, load_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = load_template(ROOT)
MACHINES = sorted(logical_id for logical_id, resource in TEMPLATE["Resources"].items()
                  if resource["Type"] in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"))
#: what Lambda itself may answer a synchronous invocation with, and a retry can cure
LAMBDA_SERVICE_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                         "Lambda.TooManyRequestsException"}


def _definition(logical_id: str) -> dict[str, Any]:
    return json.loads((ROOT / TEMPLATE["Resources"][logical_id]["Properties"]["DefinitionUri"]).read_text())


def _states(definition: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, state) for name, state, _scope in all_states(definition)]


def test_both_machines_are_covered() -> None:
    assert MACHINES == ["BacktestStateMachine", "OptimizeStateMachine"]


@pytest.mark.parametrize("logical_id", MACHINES)
def test_every_state_machine_is_executed_by_the_interpreter_in_the_suite(logical_id: str) -> None:
    """Structure alone proves little: some test deploys the machine into moto's Step Functions
    (``tests/utils/stepfunctions.deployed``) and waits for an execution of it to end."""
    executing = [path for path in (ROOT / "tests").rglob("test_*.py")
                 if re.search(rf"deployed\(ROOT, [\"']{logical_id}[\"']", text := path.read_text())
                 and re.search(r"machines\.(execute|wait)\(", text)]
    assert executing, f"no test executes {logical_id}"


@pytest.mark.parametrize("logical_id", MACHINES)
def test_nothing_runs_forever_and_nothing_ends_running(logical_id: str) -> None:
    definition = _definition(logical_id)
    assert 0 < definition["TimeoutSeconds"] <= 6 * 3600  # the whole execution
    top = definition["States"]
    for name, state in _states(definition):
        if state["Type"] == "Task":
            assert 0 < state["TimeoutSeconds"] <= 900, name  # Lambda's own ceiling
        if name in top and state["Type"] in ("Task", "Map") and name != "MarkFailed":
            assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}]
    assert top["MarkFailed"]["Next"] == "Failed" and top["Failed"]["Type"] == "Fail"


@pytest.mark.parametrize("logical_id", MACHINES)
def test_lambda_faults_are_retried_with_backoff(logical_id: str) -> None:
    for name, state in _states(_definition(logical_id)):
        if state["Type"] != "Task":
            continue
        retried = {error for retry in state["Retry"] for error in retry["ErrorEquals"]}
        assert retried >= LAMBDA_SERVICE_ERRORS or "States.ALL" in retried, name
        for retry in state["Retry"]:
            assert retry["MaxAttempts"] <= 5 and retry["BackoffRate"] >= 1.5 and retry["IntervalSeconds"] >= 1, name


@pytest.mark.parametrize("logical_id", MACHINES)
def test_the_timeout_of_a_task_outlasts_its_function(logical_id: str) -> None:
    """A function that runs out of time fails as ``Lambda.Unknown`` (retried where the machine says
    so); the state's own timeout would instead abandon an invocation still running."""
    substitutions = TEMPLATE["Resources"][logical_id]["Properties"]["DefinitionSubstitutions"]
    template = sam.load(ROOT)
    for name, state in _states(_definition(logical_id)):
        if state["Type"] == "Task":
            function_id = substitutions[state["Resource"][2:-1]]["Fn::GetAtt"][0]
            timeout = template["Resources"][function_id]["Properties"].get("Timeout", 20)
            assert timeout < state["TimeoutSeconds"], (name, function_id)


def test_the_distributed_map_fails_whole_and_writes_its_results() -> None:
    evaluate = _definition("OptimizeStateMachine")["States"]["Evaluate"]
    assert evaluate["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    # no tolerated failures (the default threshold, 0; moto's grammar takes no integer 0 here): a
    # lost batch would silently drop its trials
    assert not {"ToleratedFailurePercentage", "ToleratedFailureCount"} & set(evaluate)
    assert evaluate["MaxConcurrencyPath"] == "$.maxConcurrency"  # CAPANDEX_OPTIMIZE_MAX_CONCURRENCY
    assert evaluate["ResultWriter"]["Parameters"] == {"Bucket": "${DataBucketName}", "Prefix": "optimizations/map-runs"}
    assert {e for r in evaluate["Retry"] for e in r["ErrorEquals"]} == {"States.ItemReaderFailed"}


@pytest.mark.parametrize("logical_id", MACHINES)
def test_logged_traced_and_allowed_only_its_own_functions(logical_id: str) -> None:
    properties = TEMPLATE["Resources"][logical_id]["Properties"]
    assert properties["Type"] == "STANDARD" and properties["Tracing"] == {"Enabled": True}
    assert properties["Logging"]["Level"] == "ERROR"
    group = properties["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert TEMPLATE["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in properties["Policies"]
               if "LambdaInvokePolicy" in p}
    tasks = {v["Fn::GetAtt"][0] for v in properties["DefinitionSubstitutions"].values() if "Fn::GetAtt" in v}
    assert invoked == tasks
