"""template.yaml as SAM deploys it (rendered by samtranslator, tests/utils/sam.py): chat streamed on
the one REST API, buffered routes under API Gateway's 29 s, every function's settings present at
start, logs kept for a bounded time, names derived from the stack name, least-privilege IAM."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.utils import sam

ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = {"SupabaseUrl": "https://abcdefghijklmnop.supabase.co", "SupabaseAnonKey": "sb_publishable_test"}
#: what API Gateway allows a buffered Lambda integration before it answers 504
API_GATEWAY_TIMEOUT_S = 29


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator builds ARNs with the session's partition
        return sam.render(ROOT, PARAMETERS)


def _integrations(rendered: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) → x-amazon-apigateway-integration of the API's OpenAPI body."""
    paths = rendered["Resources"]["Api"]["Properties"]["Body"]["paths"]
    return {(path, method): operation["x-amazon-apigateway-integration"]
            for path, operations in paths.items() for method, operation in operations.items()}


def _target(integration: dict[str, Any]) -> str:
    """The logical id of the function (or of its published alias) an integration invokes."""
    return re.search(r"\$\{(\w+?)(?:Aliaslive|\.Arn)\}", integration["uri"]["Fn::Sub"]).group(1)


def _matches(route: str, path: str) -> bool:
    """Whether API Gateway's resource ``path`` (``{x}``, ``{proxy+}``) serves ``route``."""
    pattern = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(path))  # {proxy+}: one or more segments
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)  # {x}: one segment
    return re.fullmatch(pattern, route) is not None


CHAT_ROUTES = [("POST", "/api/chat"), ("GET", "/api/chat/messages"), ("DELETE", "/api/chat/messages")]


@pytest.mark.parametrize(("method", "route"), CHAT_ROUTES)
def test_every_chat_route_streams_on_the_rest_api(rendered, method: str, route: str) -> None:
    served = [(path, m, i) for (path, m), i in _integrations(rendered).items() if _matches(route, path)
              and m in (method.lower(), "x-amazon-apigateway-any-method")]
    assert served, f"{method} {route} is not on the API"
    _path, _, integration = max(served, key=lambda s: len(s[0]))  # API Gateway picks the most specific
    assert _target(integration) == "ChatFunction"
    assert integration["type"] == "aws_proxy" and integration["responseTransferMode"] == "STREAM"
    assert integration["uri"]["Fn::Sub"].endswith(
        "lambda:path/2021-11-15/functions/${ChatFunctionAliaslive}/response-streaming-invocations")
    chat = rendered["Resources"]["ChatFunction"]["Properties"]
    assert integration["timeoutInMillis"] <= chat["Timeout"] * 1000  # the stream may run as long as the function


def test_only_chat_streams_and_no_function_url_is_left(rendered) -> None:
    for (path, _method), integration in _integrations(rendered).items():
        streams = integration.get("responseTransferMode") == "STREAM"
        assert streams == (_target(integration) == "ChatFunction"), path
    assert not [r for r in rendered["Resources"].values() if r["Type"] == "AWS::Lambda::Url"]


def test_one_stage_and_it_is_throttled(rendered) -> None:
    stages = [r["Properties"] for r in rendered["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert [s["StageName"] for s in stages] == ["prod"]  # no implicit "Stage" stage without throttling
    settings = stages[0]["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
    assert stages[0]["TracingEnabled"] is True


def test_buffered_functions_stop_before_api_gateway_answers_504(rendered) -> None:
    buffered = {_target(i) for i in _integrations(rendered).values() if i.get("responseTransferMode") != "STREAM"}
    assert buffered == {"FlowsFunction", "KeysFunction", "AccountFunction", "MarketFunction", "EngineFunction",
                        "ReportFunction"}
    for function_id in buffered:
        assert rendered["Resources"][function_id]["Properties"]["Timeout"] < API_GATEWAY_TIMEOUT_S, function_id
    engine = rendered["Resources"]["EngineFunction"]["Properties"]
    budget = float(engine["Environment"]["Variables"]["CAPANDEX_BACKTEST_SYNC_BUDGET_S"])
    assert budget < engine["Timeout"]  # an in-request backtest ends before its function does


def test_api_and_chat_functions_use_snapstart_on_a_published_alias(rendered) -> None:
    for function_id in ("FlowsFunction", "KeysFunction", "AccountFunction", "MarketFunction", "ChatFunction"):
        properties = rendered["Resources"][function_id]["Properties"]
        assert properties["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}, function_id
        assert f"{function_id}Aliaslive" in rendered["Resources"]  # API Gateway invokes the snapshotted version
    assert "SnapStart" not in rendered["Resources"]["EngineFunction"]["Properties"]  # 2 GB: see template.yaml


def test_every_function_logs_to_its_own_group_with_retention(rendered) -> None:
    functions = [r["Properties"] for r in rendered["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    for properties in functions:
        group = rendered["Resources"][properties["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + properties["FunctionName"]["Fn::Sub"]}
    machine = rendered["Resources"]["BacktestStateMachine"]["Properties"]
    assert machine["LoggingConfiguration"]["Level"] == "ERROR" and machine["TracingConfiguration"] == {"Enabled": True}


def test_names_derive_from_the_stack_name(rendered) -> None:
    resources = rendered["Resources"]
    assert resources["VaultKeyAlias"]["Properties"]["AliasName"] == {"Fn::Sub": "alias/${AWS::StackName}-vault"}
    named = {k: r["Properties"].get("FunctionName") or r["Properties"].get("QueueName") or r["Properties"].get("Name")
             or r["Properties"].get("StateMachineName")
             for k, r in resources.items()
             if r["Type"] in ("AWS::Lambda::Function", "AWS::SQS::Queue", "AWS::StepFunctions::StateMachine")}
    assert all(isinstance(n, dict) and n["Fn::Sub"].startswith("${AWS::StackName}-") for n in named.values()), named


def test_no_reserved_concurrency_and_no_plain_secrets(rendered) -> None:
    parameters = sam.load(ROOT)["Parameters"]
    assert "DatabaseUrl" not in parameters and not any(p.get("NoEcho") for p in parameters.values())
    for function_id, resource in rendered["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        assert "ReservedConcurrentExecutions" not in properties, function_id  # fails where the quota is small
        variables = properties["Environment"]["Variables"]
        assert variables["DATABASE_URL"] == {"Fn::Sub": "ssm:/${AWS::StackName}/database-url"}


def _policy_documents(rendered: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    role = rendered["Resources"][role_id]["Properties"]
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn:
            documents.append(rendered["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"])
    return documents


def _actions(rendered: dict[str, Any], role_id: str) -> set[str]:
    actions: set[str] = set()
    for document in _policy_documents(rendered, role_id):
        for statement in document["Statement"]:
            listed = statement["Action"]
            actions |= set(listed if isinstance(listed, list) else [listed])
    return actions


#: what each function may do besides logging and tracing (the README's table)
PERMISSIONS = {
    "FlowsFunction": {"ssm:GetParameter", "kms:Decrypt"},
    "MarketFunction": {"ssm:GetParameter", "kms:Decrypt"},
    "KeysFunction": {"ssm:GetParameter", "kms:Decrypt", "kms:GenerateDataKey"},
    "AccountFunction": {"ssm:GetParameter", "kms:Decrypt"},
    "ChatFunction": {"ssm:GetParameter", "kms:Decrypt"},
    "EngineFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket",
                       "states:StartExecution", "states:StopExecution"},
    "TickSchedulerFunction": {"ssm:GetParameter", "kms:Decrypt", "sqs:SendMessage*"},
    "TickWorkerFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "BacktestPlanFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:ListBucket"},
    "BacktestFetchChunkFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "BacktestRunFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "BacktestFailFunction": {"ssm:GetParameter", "kms:Decrypt"},
    "ReportFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "OptimizePlanFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:ListBucket"},
    "OptimizeFetchChunkFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "OptimizePrepareFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "OptimizeBatchFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "OptimizeCollectFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "OptimizeReduceFunction": {"ssm:GetParameter", "kms:Decrypt", "s3:GetObject", "s3:PutObject", "s3:ListBucket"},
    "OptimizeFailFunction": {"ssm:GetParameter", "kms:Decrypt"},
}


def test_every_function_has_its_permissions_listed() -> None:
    assert sorted(sam.functions(ROOT)) == sorted(PERMISSIONS)  # and in the README's table


@pytest.mark.parametrize("function_id", sorted(PERMISSIONS))
def test_least_privilege(rendered, function_id: str) -> None:
    role = rendered["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    assert _actions(rendered, role) == PERMISSIONS[function_id]
    for document in _policy_documents(rendered, role):
        for statement in document["Statement"]:
            assert statement["Resource"] != "*", (function_id, statement)  # every grant names its resource


@pytest.mark.parametrize("function_id", sorted(PERMISSIONS))
def test_a_deployed_function_starts_with_the_settings_the_template_gives_it(function_id: str) -> None:
    """Import the function with its deployed environment (CAPANDEX_ENV=aws, CloudFormation's values
    stood in by placeholders): it must find every setting it requires (capandex.runtime.start)."""
    template = sam.load(ROOT)
    values = sam.parameter_values(template, {**PARAMETERS, "AWS::StackName": "capandex"})
    function = sam.with_globals(template, values)["Resources"][function_id]["Properties"]
    resolver = sam.Resolver(template, values)
    environment = {k: sam.stringify(resolver.resolve(v)) for k, v in function["Environment"]["Variables"].items()}
    assert environment["CAPANDEX_ENV"] == "aws"
    handler = "app.handler" if function["Handler"] == "run.sh" else function["Handler"]
    module = handler.rpartition(".")[0]
    code = (f"import importlib.util, sys; sys.path.insert(0, {str(ROOT / function['CodeUri'])!r}); "
            f"spec = importlib.util.spec_from_file_location('{module}', "
            f"{str(ROOT / function['CodeUri'] / (module + '.py'))!r}); m = importlib.util.module_from_spec(spec); "
            f"sys.modules['{module}'] = m; spec.loader.exec_module(m); print('started')")
    clean = {k: v for k, v in __import__("os").environ.items()
             if not k.startswith(("CAPANDEX_", "SUPABASE_", "DATABASE_", "AWS_"))}
    pythonpath = f"{ROOT / 'shared'}:{ROOT}"
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **environment, "PYTHONPATH": pythonpath,
                                                               "AWS_DEFAULT_REGION": "us-east-1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("started"), result.stderr[-2000:]


def test_every_function_handler_exists() -> None:
    for function_id, properties in sam.functions(ROOT).items():
        if properties["Handler"] == "run.sh":
            assert "app:streaming_app" in (ROOT / properties["CodeUri"] / "run.sh").read_text()
            continue
        module, _, attribute = properties["Handler"].rpartition(".")
        source = (ROOT / properties["CodeUri"] / f"{module}.py").read_text()
        assert re.search(rf"^(def {attribute}\(|{attribute} = )", source, re.M), function_id


def test_samconfig_runs_sam_local_invoke_with_env_json() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["local_invoke"]["parameters"]["env_vars"] == "events/env.json"
    assert json.loads((ROOT / "events" / "env.json").read_text())["Parameters"]["CAPANDEX_ENV"] == "local"
    assert importlib.util.find_spec("samtranslator") is not None  # cfn-lint checks the transform with it
