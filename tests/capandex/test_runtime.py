"""Every function's one set-up (capandex.runtime): JSON logs once, correlation ids, scrubbing,
EMF metrics, start-up checks, SnapStart hooks."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from capandex import snapstart, telemetry
from capandex.errors import Misconfigured
from capandex.telemetry import Metric

ROOT = Path(__file__).resolve().parents[2]

#: Runs in a fresh interpreter, as Lambda does: the runtime's own root handler (stderr, plain text)
#: is installed before the function module is imported; then an API, a worker and a backtest
#: invocation, and a stray record holding a credential.
LAMBDA_LIKE = """
import importlib.util, json, logging, sys, types, uuid
logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
logging.getLogger().setLevel(logging.INFO)

def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

from capandex.api.functions import load_function
from capandex.auth import issue_dev_token
from capandex.config import DEV_JWT_SECRET

context = types.SimpleNamespace(function_name="capandex-test", aws_request_id="lambda-request-1")
event = json.load(open("events/flows/list.json"))
token = issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET)
event["headers"]["Authorization"] = "Bearer " + token
event["multiValueHeaders"]["Authorization"] = ["Bearer " + token]
print("STATUS", load_function("flows").handler(event, context)["statusCode"], file=sys.stderr)
worker = load("functions/ticks/worker.py", "ticks_worker")
print("BATCH", json.dumps(worker.handler(json.load(open("events/ticks/sqs_batch.json")), context)), file=sys.stderr)
tasks = load("functions/backtest/handlers.py", "backtest_handlers")
tasks.fail({"backtestId": "bt_00000000000000000000000000000000", "userId": str(uuid.uuid4()),
            "error": {"Error": "States.Timeout", "Cause": ""}}, context)
logging.getLogger("capandex.anywhere").warning("header was Bearer " + token)
"""


@pytest.fixture(scope="module")
def lambda_like_run(tmp_path_factory) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAPANDEX_ENV": "local", "CAPANDEX_DATA_DIR": str(tmp_path_factory.mktemp("data")),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]), "LOG_LEVEL": "INFO"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", LAMBDA_LIKE], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _records(run: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def test_every_record_is_one_json_line_and_none_reaches_the_runtime_handler(lambda_like_run) -> None:
    stderr = [line for line in lambda_like_run.stderr.splitlines() if line]
    assert stderr[0] == "STATUS 200" and stderr[1] == 'BATCH {"batchItemFailures": []}'
    assert len(stderr) == 2, stderr  # nothing was written a second time by the runtime's handler
    assert all(line.startswith("{") for line in lambda_like_run.stdout.splitlines())
    requests = [r for r in _records(lambda_like_run) if r.get("message") == "request"]
    assert len(requests) == 1 and requests[0]["status"] == 200


def test_each_invocation_stamps_its_correlation_id(lambda_like_run) -> None:
    logs = [r for r in _records(lambda_like_run) if "_aws" not in r]
    request = next(r for r in logs if r["message"] == "request")
    api_request_id = json.loads((ROOT / "events/flows/list.json").read_text())["requestContext"]["requestId"]
    assert request["correlation_id"] == api_request_id
    assert request["cold_start"] is True and request["function_request_id"] == "lambda-request-1"
    batch = json.loads((ROOT / "events/ticks/sqs_batch.json").read_text())["Records"]
    ticks = [r for r in logs if r["message"] == "tick"]
    assert [t["correlation_id"] for t in ticks] == [r["messageId"] for r in batch]  # one id per SQS record
    assert all(t["cold_start"] is False and t["function"] == "ticks-worker" for t in ticks)


def test_secrets_are_scrubbed_in_every_function(lambda_like_run) -> None:
    stray = next(r for r in _records(lambda_like_run) if r.get("message", "").startswith("header was"))
    assert stray["message"] == "header was [redacted]" and "eyJ" not in lambda_like_run.stdout


def test_each_invocation_writes_its_metrics_as_emf(lambda_like_run) -> None:
    documents = [r for r in _records(lambda_like_run) if "_aws" in r]
    by_service = {d["service"]: d for d in documents}
    worker, backtest = by_service["ticks-worker"], by_service["backtest"]
    assert worker["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Capandex"
    assert worker["TicksProcessed"] == [2.0] and worker["TicksRetried"] == [0.0]
    assert backtest["BacktestsFailed"] == [1.0]
    assert "flows" not in by_service  # listing flows counts nothing: no empty document


def test_counts_outside_an_invocation_are_dropped_and_dimensions_split_documents(capsys) -> None:
    telemetry.count(Metric.TICKS_PROCESSED)  # capandex serve, the CLI: nothing accumulates
    with telemetry.recording("engine") as counts:
        telemetry.count(Metric.BACKTESTS_RUN)
        with telemetry.recording("nested") as inner:  # a handler called inside a recording adds to it
            telemetry.count(Metric.UPSTREAM_ERRORS, upstream="binance")
        assert inner is counts and capsys.readouterr().out == ""
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in documents] == [[["service"]],
                                                                                    [["upstream", "service"]]]
    assert documents[0]["BacktestsRun"] == [1.0] and documents[1]["upstream"] == "binance"


def test_metrics_are_written_when_the_invocation_crashes(capsys) -> None:
    with pytest.raises(RuntimeError), telemetry.recording("ticks-worker"):
        telemetry.count(Metric.TICKS_RETRIED)
        raise RuntimeError("boom")
    assert json.loads(capsys.readouterr().out)["TicksRetried"] == [1.0]


def _fresh(path: Path):
    spec = importlib.util.spec_from_file_location(f"fresh_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


AWS_COMMON = {"CAPANDEX_ENV": "aws", "SUPABASE_URL": "https://abcdefgh.supabase.co", "SUPABASE_ANON_KEY": "anon",
              "DATABASE_URL": "ssm:/capandex/database-url", "CAPANDEX_VAULT_KMS_KEY_ID": "alias/capandex-vault",
              "CAPANDEX_DATA_BUCKET": None, "CAPANDEX_BACKTEST_STATE_MACHINE_ARN": None,
              "CAPANDEX_OPTIMIZE_STATE_MACHINE_ARN": None, "CAPANDEX_TICK_QUEUE_URL": None}


@pytest.mark.parametrize(("function", "missing"), [
    ("engine/app.py", "CAPANDEX_DATA_BUCKET, CAPANDEX_BACKTEST_STATE_MACHINE_ARN, CAPANDEX_OPTIMIZE_STATE_MACHINE_ARN"),
    ("ticks/scheduler.py", "CAPANDEX_TICK_QUEUE_URL"),
    ("ticks/worker.py", "CAPANDEX_DATA_BUCKET"),
    ("backtest/handlers.py", "CAPANDEX_DATA_BUCKET"),
    ("optimize/handlers.py", "CAPANDEX_DATA_BUCKET"),
])
def test_a_function_missing_a_setting_stops_at_import(configure, function: str, missing: str) -> None:
    configure(**AWS_COMMON)
    with pytest.raises(Misconfigured, match=f"needs {missing}, which"):
        _fresh(ROOT / "functions" / function)


def test_snapstart_hooks_are_registered_and_undo_what_a_snapshot_shares(tmp_path: Path) -> None:
    import snapshot_restore_py

    from capandex.db import session

    snapstart.register()
    assert any(hook is snapstart.before_snapshot for hook, *_ in snapshot_restore_py._before_snapshot_registry)
    assert any(hook is snapstart.after_restore for hook, *_ in snapshot_restore_py._after_restore_registry)
    session.get_engine(f"sqlite:///{tmp_path / 'snap.db'}")
    snapstart.before_snapshot()
    assert session._engines == {}  # nothing that could hold a socket is frozen into the snapshot
    random.seed(7)
    first_restore = random.random()
    random.seed(7)  # a second environment restored from the same snapshot
    snapstart.after_restore()
    assert random.random() != first_restore


@pytest.mark.parametrize("initialization", ["on-demand", "snap-start"])
def test_what_a_first_request_imports_goes_into_the_snapshot_only(initialization: str) -> None:
    """Under SnapStart the init is paid once per published version: the driver, boto3 and the
    parameters utility are imported then. On an ordinary init they wait for the first request."""
    from capandex.runtime import FIRST_REQUEST_IMPORTS

    code = ("import sys; from capandex.api.functions import load_function; load_function('flows'); "
            f"print(','.join(m for m in {FIRST_REQUEST_IMPORTS!r} if m in sys.modules))")
    env = {**os.environ, "AWS_LAMBDA_INITIALIZATION_TYPE": initialization, "CAPANDEX_ENV": "local",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [m for m in result.stdout.strip().split(",") if m]
    assert imported == (list(FIRST_REQUEST_IMPORTS) if initialization == "snap-start" else [])


def test_the_web_adapter_entry_stamps_each_request_as_an_invocation(monkeypatch, capsys, caplog) -> None:
    """Chat runs under uvicorn behind the Lambda Web Adapter: no Python handler per invocation, so
    the ASGI middleware takes the request id from the ``x-amzn-request-context`` header the adapter
    forwards, and writes the request's metrics when it ends."""
    import logging

    import httpx
    from fastapi import APIRouter

    from capandex.api.app import create_app
    from capandex.runtime import LambdaWebAdapterInvocations

    router = APIRouter()

    @router.get("/api/ping")
    def ping() -> dict:
        logging.getLogger("capandex.test").info("pinged")
        telemetry.count(Metric.UPSTREAM_ERRORS, upstream="anthropic")
        return {"pong": True}

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "capandex-chat")
    app = LambdaWebAdapterInvocations(create_app("chat-test", [router]), "chat")
    headers = {"x-amzn-request-context": json.dumps({"requestId": "apigw-request-7", "stage": "prod"}),
               "x-amzn-lambda-context": json.dumps({"request_id": "lambda-request-7"})}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lwa") as client:
            return await client.get("/api/ping", headers=headers)

    import asyncio

    with caplog.at_level(logging.INFO):
        response = asyncio.run(call())
    assert response.status_code == 200 and response.headers["x-correlation-id"] == "apigw-request-7"
    access = next(r for r in caplog.records if r.getMessage() == "request")
    assert access.correlation_id == "apigw-request-7"  # type: ignore[attr-defined]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [(d["service"], d["UpstreamErrors"]) for d in emf] == [("chat", [1.0])]
