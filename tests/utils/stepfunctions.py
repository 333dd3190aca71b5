"""Run the project's state machines under moto's Step Functions interpreter, every Lambda task
routed in-process to the handler template.yaml names.

moto interprets ASL (its port of LocalStack's interpreter: Retry, Catch, Map, timeouts, JSONPath)
when mocked with ``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``. A Task
then calls ``lambda:Invoke`` on moto's Lambda backend, which would start the function in Docker;
:class:`InProcessLambdas` replaces only that last step: moto still receives the invocation (name,
payload) and answers with the payload or the error Lambda would, while the function's ``Handler``
from template.yaml runs in this process against moto's S3 and the loopback exchange.

Errors come back as the Python runtime reports them (``errorType``: the exception class name,
``errorMessage``), so Retry and Catch match Capandex errors by class name as in AWS. A
``MemoryError`` stands for a function that ran out of memory: Lambda then reports no error of the
function's own, and Step Functions names it ``Lambda.Unknown`` (as for a time-out). moto's
interpreter does not make that mapping itself, so the router does.

Retry waits are recorded in :attr:`StateMachines.waits` instead of slept (moto sleeps for real).

>>> with StateMachines(ROOT) as machines:                     # inside configure()/binance fixtures
...     arn = machines.deploy("BacktestStateMachine")
...     run = machines.execute(arn, {"backtestId": "bt_1", "userId": "…"})
...     run.status, run.error, run.events("LambdaFunctionFailed")
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/capandex-test"

Fault = Callable[[dict[str, Any]], None]


def load_template(root: Path) -> dict[str, Any]:
    """template.yaml with its intrinsic functions as CloudFormation's JSON form (cfn-lint's decoder)."""
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(root / "template.yaml"))


@dataclass
class Execution:
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]

    def events(self, kind: str) -> list[dict[str, Any]]:
        """History events of one type (``LambdaFunctionFailed``, ``TaskStateEntered``…)."""
        return [e for e in self.history if e["type"] == kind]


@dataclass
class InProcessLambdas:
    """Function name → the handler it runs, with faults a test injects before the handler runs."""

    root: Path
    handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: invocations still running (a failed Map leaves its other iterations to finish)
    running: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0

    def register(self, name: str, code_uri: str, handler: str) -> None:
        module_name, _, function = handler.rpartition(".")
        self.handlers[name] = getattr(lambda_module(self.root / code_uri, module_name), function)

    def invoke(self, name: str, event: Any) -> tuple[str, bool, str]:
        """moto's ``LambdaFunction._invoke_lambda`` contract: (payload, errored, logs)."""
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            faults = self.faults.get(name) or []
            fault = faults.pop(0) if faults else None
        with self.running:
            self.in_flight += 1
        try:
            if fault is not None:
                fault(event)
            result = self.handlers[name](event, None)
        except MemoryError:
            crash = {"errorType": "Lambda.Unknown", "errorMessage": "Runtime exited: out of memory"}
            return json.dumps(crash), True, ""
        except Exception as exc:
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc),
                               "stackTrace": traceback.format_tb(exc.__traceback__)}), True, ""
        finally:
            with self.running:
                self.in_flight -= 1
                self.running.notify_all()
        return json.dumps(result), False, ""

    def settle(self, timeout_s: float = 30.0) -> None:
        """Wait for invocations still running (so none outlives the test that started it)."""
        with self.running:
            self.running.wait_for(lambda: self.in_flight == 0, timeout=timeout_s)


class StateMachines:
    """moto with the Step Functions interpreter on, and the template's Lambda tasks in-process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.template = load_template(root)
        self.lambdas = InProcessLambdas(root)
        self.waits: list[float] = []
        #: the ARN :meth:`deploy` returned last
        self.arn = ""
        self._stack = ExitStack()

    def __enter__(self) -> StateMachines:
        self._stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        lambdas = self.lambdas

        def invoke_in_process(function: Any, event: Any = None) -> tuple[str, bool, str]:
            return lambdas.invoke(function.function_name, event)

        from moto.awslambda.models import LambdaFunction
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

        self._stack.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda", invoke_in_process))
        # only the retrier's clock: ``time`` there is the module, whose sleep everything else shares
        self._stack.enter_context(mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=self.waits.append)))
        boto3.client("iam", region_name=REGION).create_role(
            RoleName="capandex-test", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
        return self

    def __exit__(self, *exc: object) -> None:
        self.lambdas.settle()
        self._stack.close()

    def fail_next(self, function: str, *faults: Fault) -> None:
        """Run ``faults`` (each may raise) before the next invocations of ``function``, one each."""
        with self.lambdas.lock:
            self.lambdas.faults.setdefault(function, []).extend(faults)

    def deploy(self, logical_id: str, values: dict[str, str] | None = None) -> str:
        """Create the state machine ``logical_id`` of template.yaml and a moto function for each
        Lambda its definition substitutes; ``values`` gives the other substitutions (a bucket
        name for a ``!Ref``). Returns the state machine's ARN."""
        properties = self.template["Resources"][logical_id]["Properties"]
        definition = (self.root / properties["DefinitionUri"]).read_text()
        client = boto3.client("lambda", region_name=REGION)
        for key, value in properties.get("DefinitionSubstitutions", {}).items():
            if "Fn::GetAtt" not in value:
                definition = definition.replace("${" + key + "}", (values or {})[key])
                continue
            function_id = value["Fn::GetAtt"][0]
            function = self.template["Resources"][function_id]["Properties"]
            if function_id not in self.lambdas.handlers:
                self.lambdas.register(function_id, function["CodeUri"], function["Handler"])
                client.create_function(FunctionName=function_id, Runtime="python3.12", Role=ROLE,
                                       Handler=function["Handler"], Code={"ZipFile": b"in process"})
            function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_id}"
            definition = definition.replace("${" + key + "}", function_arn)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        self.arn = sfn.create_state_machine(name=f"{logical_id}-{uuid.uuid4().hex[:8]}", definition=definition,
                                            roleArn=ROLE)["stateMachineArn"]
        return self.arn

    def execution_arn(self, name: str) -> str:
        """The ARN of the deployed machine's execution ``name`` (our executions are named after the
        run they carry out: the backtest's or the optimisation's id)."""
        return self.arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def wait(self, execution_arn: str, timeout_s: float = 60.0) -> Execution:
        """Poll until the execution has ended; its status, output or error, and history."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        deadline = time.monotonic() + timeout_s
        while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout_s} s")
            time.sleep(0.05)
        history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        output = json.loads(described["output"]) if described.get("output") else None
        return Execution(described["status"], output, described.get("error"), described.get("cause"), history)

    def execute(self, arn: str, payload: dict[str, Any], timeout_s: float = 60.0) -> Execution:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
        return self.wait(execution, timeout_s)


@contextmanager
def deployed(root: Path, logical_id: str, *, bucket: str, monkeypatch: Any,
             values: dict[str, str] | None = None) -> Iterator[StateMachines]:
    """moto with S3 ``bucket`` and the template's state machine ``logical_id`` deployed
    (``machines.arn``), as the state machine tests need it: exchange retries do not sleep, and the
    candle stores are cleared before and after (the caller then points the settings at the bucket
    and the ARN)."""
    from capandex.exchanges import retry
    from capandex.marketdata.store import clear_stores

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    with StateMachines(root) as machines:
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
        machines.deploy(logical_id, values)
        clear_stores()
        try:
            yield machines
        finally:
            clear_stores()


def lambda_module(folder: Path, module_name: str) -> ModuleType:
    """``folder/<module_name>.py`` as Lambda imports it (the folder is the code root), once: the
    state machine's tasks and a test that drives them one by one share the module."""
    name = f"lambda_{folder.name}_{module_name}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, folder / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- a definition, read ---------------------------------------------------------------------------
def all_states(scope: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, state, its scope's States) for every state, nested Map processors included."""
    out = []
    for name, state in scope["States"].items():
        out.append((name, state, scope["States"]))
        if state["Type"] == "Map":
            out += all_states(state["ItemProcessor"])
    return out


def check_well_formed(definition: dict[str, Any]) -> None:
    """Assert what any definition of ours must be: it starts at a state it has, every state that
    does not end the run has exactly one of ``Next``/``End``, every transition names a state of
    its own scope, and every ``Retry`` has a positive count and back-off and names Step Functions'
    or Lambda's errors or a Capandex error class (a task's error reaches the machine as its class
    name)."""
    from capandex import errors

    assert definition["StartAt"] in definition["States"]
    for name, state, scope in all_states(definition):
        if state["Type"] not in ("Succeed", "Fail", "Choice"):
            assert ("Next" in state) != bool(state.get("End")), name
        targets = [state.get("Next"), state.get("Default")] + [c["Next"] for c in state.get("Catch", []) +
                                                                state.get("Choices", [])]
        assert all(t is None or t in scope for t in targets), f"{name} → {targets}"
        for retry in state.get("Retry", []):
            assert retry.get("MaxAttempts", 3) >= 1 and retry.get("BackoffRate", 2.0) >= 1, name
            for error in retry["ErrorEquals"]:
                assert error.startswith(("States.", "Lambda.")) or issubclass(getattr(errors, error),
                                                                              errors.CapandexError), name


def check_tasks_are_handlers(root: Path, logical_id: str, code_uri: str) -> set[str]:
    """Assert that every Task of the template's state machine ``logical_id`` invokes a function
    of the template whose ``Handler`` is a callable of ``code_uri`` (``functions/backtest/``);
    the substitution keys of those functions."""
    resources = load_template(root)["Resources"]
    machine = resources[logical_id]["Properties"]
    definition = json.loads((root / machine["DefinitionUri"]).read_text())
    used = {s["Resource"][2:-1] for _, s, _ in all_states(definition) if s["Type"] == "Task"}
    substitutions = machine["DefinitionSubstitutions"]
    assert used <= set(substitutions)
    for key in used:
        function = resources[substitutions[key]["Fn::GetAtt"][0]]["Properties"]
        assert function["CodeUri"] == code_uri, key
        module_name, _, attribute = function["Handler"].rpartition(".")
        assert callable(getattr(lambda_module(root / code_uri, module_name), attribute)), key
    return used
