"""Schemathesis over the merged OpenAPI of ``capandex serve`` (the gateway it runs), signed in as a
user with data: every operation through the examples, coverage and fuzzing phases, 0 server errors.

The user owns a flow (with a webhook trigger), a saved exchange key, a notification and a finished
backtest; generated path ids are swapped for the real ones half of the time, so the fuzzer reaches
the code behind the 404. Exchanges are the loopback Binance (the others a closed port, Anthropic
too), on real Postgres. The example budget keeps this test under a minute on 2 cores
(:data:`FUZZ_EXAMPLES` per operation besides the coverage phase's own cases); a deeper run
(``CAPANDEX_FUZZ_SQLITE=1`` for SQLite, ``CAPANDEX_FUZZ_STATS=calls.txt`` to see what it reached):
``CAPANDEX_FUZZ_EXAMPLES=300 pytest tests/e2e/test_schemathesis.py`` (README, Testing).
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.capandex.engine.factories import sma_cross_flow
from tests.utils import secret_guard
from tests.utils.binance_server import BinanceServer
from tests.utils.binance_signed import SignedBinance

#: fuzzing-phase examples per operation (the examples and coverage phases add their own)
FUZZ_EXAMPLES = int(os.environ.get("CAPANDEX_FUZZ_EXAMPLES", "10"))
CLOSED = "http://127.0.0.1:9"


@dataclass
class World:
    """The signed-in user and the ids of what they own."""

    headers: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    from capandex.auth import issue_dev_token
    from capandex.config import DEV_JWT_SECRET, get_settings
    from capandex.exchanges import retry
    from tests.utils.fixtures import reset_exchange_caches

    with BinanceServer() as binance, pytest.MonkeyPatch.context() as patch:
        SignedBinance(binance)  # account endpoints: a key it does not know is refused, not a 404
        urls = {name: CLOSED for name in ("okx", "bybit", "mexc", "coinbase", "kraken")}
        data_dir = tmp_path_factory.mktemp("fuzz")
        database = (f"sqlite:///{data_dir / 'capandex.db'}" if os.environ.get("CAPANDEX_FUZZ_SQLITE")
                    else request.getfixturevalue("postgres_url"))
        for key, value in {"CAPANDEX_DATA_DIR": str(data_dir), "DATABASE_URL": database,
                           "CAPANDEX_EXCHANGE_URLS": json.dumps({**urls, "binance": binance.url}),
                           "CAPANDEX_EXCHANGE_TIMEOUT_MS": "500", "CAPANDEX_BALANCE_TIMEOUT_S": "1",
                           "ANTHROPIC_BASE_URL": CLOSED, "ANTHROPIC_MAX_RETRIES": "0",
                           "CAPANDEX_BACKTEST_SYNC_BUDGET_S": "10", "LOG_LEVEL": "WARNING"}.items():
            patch.setenv(key, value)
        patch.setattr(retry, "sleep", lambda _s: None)
        get_settings.cache_clear()
        reset_exchange_caches()
        user = uuid.uuid4()
        headers = {"Authorization": f"Bearer {issue_dev_token(user, DEV_JWT_SECRET)}"}
        ids = _seed(user, headers)
        # from here on every backtest is a background one whose run is not started: the fuzzer
        # reaches validation, planning, the per-user cap and the row, never a year of downloads
        from capandex.backtests import service
        from capandex.research import service as research

        patch.setenv("CAPANDEX_BACKTEST_SYNC_BUDGET_S", "0")
        patch.setattr(service, "start_async", lambda *_: None)
        patch.setattr(research, "start", lambda *_: None)  # an optimisation stays running: later ones are 429
        get_settings.cache_clear()
        yield World(headers=headers, ids=ids)
        get_settings.cache_clear()
        reset_exchange_caches()


def _seed(user: uuid.UUID, headers: dict[str, str]) -> dict[str, str]:
    """A flow, a version, a webhook, an exchange key, a notification, a backtest, a paper execution."""
    from fastapi.testclient import TestClient

    from capandex.api.gateway import Gateway
    from capandex.db.session import transaction
    from capandex.notifications import notify

    flow = sma_cross_flow(5, 20)
    flow["nodes"].append({"id": "hook", "type": "trigger", "data": {"kind": "webhook"}})
    flow["settings"] = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}
    key = {"exchange": "binance", "apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    secret_guard.register(key["apiKey"], key["secret"])
    with TestClient(Gateway(), headers=headers) as client:
        flow_id = client.post("/api/flows", json={"name": "fuzzed", **flow}).json()["id"]
        version_id = client.post(f"/api/flows/{flow_id}/versions", json={"description": "v1"}).json()["id"]
        token = client.post(f"/api/flows/{flow_id}/webhook").json()["token"]
        key_id = client.post("/api/exchange-keys", json=key).json()["id"]
        backtest = client.post("/api/engine/backtest", json={
            "flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
            "startDate": "2024-01-01", "endDate": "2024-01-08"})
        assert backtest.status_code == 200, backtest.text
        execution = client.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
        assert execution.status_code == 200, execution.text
    with transaction(user) as conn:
        notification_id = notify(conn, user_id=user, event="engine_start", title="Started", message="fuzzed")
    secret_guard.register(token)
    return {"flowId": flow_id, "versionId": version_id, "token": token, "id": key_id,
            "backtestId": backtest.json()["backtestId"], "executionId": execution.json()["executionId"],
            "notificationId": notification_id}


def _gateway():
    from capandex.api.gateway import Gateway

    return Gateway()


#: loaded at collection (one test per operation); settings are read per request, so the
#: ``world`` fixture's environment applies to every call
schema = schemathesis.openapi.from_asgi("/api/openapi.json", _gateway())


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, world: World) -> None:
    """Every generated request answers without a 5xx, with a status and a body the document declares."""
    if case.method != "DELETE" and zlib.crc32(repr((case.path_parameters, case.body)).encode()) % 2 == 0:
        for values in (case.path_parameters, case.body):  # reach what the user owns, half of the time
            if isinstance(values, dict):
                values.update({name: world.ids[name] for name in values if name in world.ids})
    response = case.call(headers=world.headers)
    if os.environ.get("CAPANDEX_FUZZ_STATS"):  # what a run reached: one line per call
        with open(os.environ["CAPANDEX_FUZZ_STATS"], "a") as out:
            detail = response.text[:160].replace("\n", " ") if response.status_code in (400, 422) else ""
            out.write(f"{case.method} {case.path} {response.status_code} {detail}\n")
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             response_schema_conformance])
