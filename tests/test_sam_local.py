"""``sam local invoke -e events/<group>/<event>.json --env-vars events/env.json`` for every event.

Each function gets the environment SAM CLI would give it (template.yaml's variables, resolved with
SAM's rules, overridden by events/env.json: tests/utils/sam.py), is imported fresh as Lambda
imports its handler module, and its handler runs the event; the status is the one the event
intends. Like every ``sam local invoke``, each event starts from an empty container: a fresh
SQLite database and data directory (``CAPANDEX_ENV=local``), so an event that names an id nobody
created answers 404, as it would there.

Two departures from SAM, both outside the code under test: exchange calls go to the loopback
Binance (this machine has no route to binance.com), and the chat function, which SAM runs
through the Lambda Web Adapter in buffered mode (env.json), runs through the same app's Mangum
``handler``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.utils import sam

ROOT = Path(__file__).resolve().parents[1]
EVENTS = sorted(p for p in (ROOT / "events").glob("*/*.json"))
ENV_JSON = json.loads((ROOT / "events" / "env.json").read_text())

#: events folder (or event name) → the function SAM invokes with it
FUNCTIONS = {"flows": "FlowsFunction", "engine": "EngineFunction", "market": "MarketFunction",
             "keys": "KeysFunction", "account": "AccountFunction", "chat": "ChatFunction", "report": "ReportFunction",
             "ticks/scheduled": "TickSchedulerFunction", "ticks/sqs_batch": "TickWorkerFunction"}

#: event → what it answers in a fresh container (HTTP status, or the event handler's result)
EXPECTED: dict[str, Any] = {
    "account/balance": 200,  # no exchange keys yet: {"totalUsd": 0.0, "exchanges": []}
    "account/multi-flow": 200,
    "account/notification-delete": 404,
    "account/notification-read": 404,
    "account/notifications-list": 200,
    "account/notifications-read-all": 200,
    "account/preferences-get": 200,
    "account/preferences-put": 200,
    "chat/delete_messages": 404,  # the flow it names does not exist yet
    "chat/get_messages": 404,
    "chat/post_chat": 404,
    "engine/backtest-run": 404,
    "engine/backtest-status": 404,
    "engine/backtest-trades": 404,
    "engine/optimize-apply": 404,  # no such optimisation in this container
    "engine/optimize-cancel": 404,
    "engine/optimize-start": 404,  # the flow it names does not exist yet
    "engine/optimize-status": 404,
    "engine/optimize-trials": 404,
    "engine/parity": 404,  # no such execution in this container
    "engine/start": 404,
    "engine/status": 404,
    "engine/stop": 404,
    "engine/webhook": 404,  # an unknown flow and token: "No such webhook."
    "flows/create": 201,
    "flows/delete": 404,
    "flows/get": 404,
    "flows/list": 200,
    "flows/performance": 404,
    "flows/update": 404,
    "flows/versions-create": 404,
    "flows/versions-list": 404,
    "flows/versions-restore": 404,
    "flows/webhook-rotate": 404,
    "keys/ai-keys-delete": 200,
    "keys/ai-keys-get": 200,
    "keys/ai-keys-save": 200,  # sealed with the local vault key created in /tmp
    "keys/ai-keys-validate": 404,  # none saved in this container
    "keys/exchange-keys-create": 201,
    "keys/exchange-keys-delete": 404,
    "keys/exchange-keys-list": 200,
    "keys/exchange-keys-validate": 404,
    "market/exchanges": 200,
    "market/symbols": 200,
    "market/ticker": 200,
    "report/backtest-report": 404,  # no such backtest in this container
    "ticks/scheduled": {"enqueued": 0},  # no running execution to tick
    "ticks/sqs_batch": {"batchItemFailures": []},  # unknown executions are skipped, not redelivered
}


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _function(path: Path) -> str:
    return FUNCTIONS.get(_name(path)) or FUNCTIONS[path.parent.name]


def _import_handler(function_id: str) -> Any:
    """The handler as Lambda imports it: the function's folder is the code root, the module is a
    top-level module of its own (registered in ``sys.modules``, as pydantic needs)."""
    properties = sam.functions(ROOT)[function_id]
    handler = "app.handler" if properties["Handler"] == "run.sh" else properties["Handler"]  # chat: see docstring
    module_name, _, attribute = handler.rpartition(".")
    folder = ROOT / properties["CodeUri"]
    name = f"sam_local_{function_id}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, folder / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return getattr(module, attribute)


@pytest.fixture
def sam_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, binance):
    """Apply the environment SAM CLI resolves for a function, in an empty container."""
    from capandex.config import get_settings
    from capandex.marketdata.store import clear_stores
    from tests.utils.fixtures import reset_exchange_caches

    def apply(function_id: str) -> dict[str, str]:
        environment = sam.local_environment(ROOT, function_id, ENV_JSON, shell={})
        for key in [k for k in sys.modules["os"].environ if k.startswith(("CAPANDEX_", "SUPABASE_", "DATABASE_"))]:
            monkeypatch.delenv(key)  # the developer's shell passes none of them (rule 4 of tests/utils/sam.py)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        assert environment["CAPANDEX_DATA_DIR"] == "/tmp/capandex"  # a fresh /tmp per invocation…
        monkeypatch.setenv("CAPANDEX_DATA_DIR", str(tmp_path / "tmp" / "capandex"))  # …here a fresh tmp_path
        monkeypatch.setenv("CAPANDEX_EXCHANGE_URLS", binance.exchange_urls_env())  # no route to binance.com
        get_settings.cache_clear()
        clear_stores()
        reset_exchange_caches()
        return environment

    yield apply
    get_settings.cache_clear()
    clear_stores()


def test_every_event_has_an_expected_outcome() -> None:
    assert sorted(EXPECTED) == sorted(_name(p) for p in EVENTS if p.name != "env.json")


@pytest.mark.parametrize("path", [p for p in EVENTS if p.name != "env.json"], ids=_name)
def test_sam_local_invoke(path: Path, sam_local) -> None:
    function_id = _function(path)
    environment = sam_local(function_id)
    assert environment["CAPANDEX_ENV"] == "local" and environment["SUPABASE_URL"] == "http://127.0.0.1:54321"
    event = json.loads(path.read_text())
    result = _import_handler(function_id)(event, None)
    expected = EXPECTED[_name(path)]
    if isinstance(expected, int):
        assert result["statusCode"] == expected, result["body"]
        if expected >= 400:
            assert json.loads(result["body"])["error"]["code"] == {404: "not_found"}[expected]
    else:
        assert result == expected


@pytest.mark.parametrize("path", [p for p in EVENTS if p.parent.name not in ("ticks", "README.md")
                                  and p.name != "env.json"], ids=_name)
def test_api_events_carry_what_api_gateway_sends(path: Path) -> None:
    """API Gateway fills ``headers`` and ``multiValueHeaders`` alike; Mangum reads the latter first,
    so a token in one only would not be the one the function sees."""
    event = json.loads(path.read_text())
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    assert (event["multiValueQueryStringParameters"] or {}) == {
        k: [v] for k, v in (event["queryStringParameters"] or {}).items()}
    assert event["requestContext"]["path"] == f"/prod{event['path']}"
    if path.stem != "webhook":  # the webhook's credential is the token in its path
        assert event["headers"]["Authorization"].startswith("Bearer eyJ")


def test_env_json_only_overrides_variables_the_template_declares() -> None:
    """SAM CLI drops an env.json variable that no function declares: it would silently do nothing."""
    declared: set[str] = set()
    for function_id in sam.functions(ROOT):
        declared |= set(sam.local_environment(ROOT, function_id, {}, shell={}))
    overridden = {k for section in ENV_JSON.values() for k in section}
    assert overridden <= declared, overridden - declared
