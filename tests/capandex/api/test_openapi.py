"""The merged OpenAPI document is one a client can be generated from: security schemes, the real
error envelope on every route, typed metrics, one schema per name; and the docs work offline."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from capandex.api.openapi import ErrorResponse, SchemaConflict, merge_documents

ERROR_REF = "#/components/schemas/ErrorResponse"
#: the seed's backtest metrics (api-reference.txt), in its order
SEED_METRICS = ["pnl", "pnlPercent", "winRate", "maxDrawdown", "maxDrawdownPercent", "sharpeRatio",
                "profitFactor", "totalTrades", "winningTrades", "losingTrades"]


@pytest.fixture
def gateway(configure):
    from capandex.api.gateway import Gateway

    configure(SUPABASE_URL="https://abcdefghijklmnop.supabase.co", DATABASE_URL=None)
    return Gateway()


@pytest.fixture
def document(gateway) -> dict[str, Any]:
    return gateway.openapi()


def operations(document: dict[str, Any]):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_bearer_and_cookie_schemes_guard_every_signed_in_route(document) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    # the cookie @supabase/ssr sets for this project: sb-<first host label>-auth-token
    assert (schemes["supabaseCookie"]["in"], schemes["supabaseCookie"]["name"]) == \
        ("cookie", "sb-abcdefghijklmnop-auth-token")
    unsecured = []
    for method, path, operation in operations(document):
        if operation["security"]:
            assert operation["security"] == [{"bearerAuth": []}, {"supabaseCookie": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
        else:
            unsecured.append(f"{method} {path}")
    assert unsecured == ["POST /api/webhooks/{flowId}/{token}"]  # its token in the path is the credential


def test_every_error_response_is_the_envelope(document) -> None:
    text = json.dumps(document)
    assert "HTTPValidationError" not in text and '"detail"' not in text
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert "500" in responses, (method, path)
        if operation.get("parameters") or "requestBody" in operation:
            assert {"400", "422"} <= set(responses), (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path)
                assert response["description"], (method, path)
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"]
    envelope = document["components"]["schemas"]["ErrorResponse"]
    body = document["components"]["schemas"]["ErrorBody"]
    assert envelope["required"] == ["error"] and set(body["required"]) == {"code", "message"}
    assert body["properties"]["details"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/ErrorDetail"}


def test_routes_declare_the_errors_their_services_raise(document) -> None:
    paths = document["paths"]
    assert {"404", "409"} <= set(paths["/api/flows/{flowId}"]["delete"]["responses"])  # running flow
    assert {"404", "409"} <= set(paths["/api/engine/start"]["post"]["responses"])
    assert {"404", "429", "502"} <= set(paths["/api/engine/backtest"]["post"]["responses"])
    assert {"404", "409", "413", "429", "503"} <= set(paths["/api/webhooks/{flowId}/{token}"]["post"]["responses"])
    assert {"429", "502", "503"} <= set(paths["/api/market"]["get"]["responses"])


def test_unauthenticated_calls_answer_the_documented_401(gateway, document) -> None:
    """Every signed-in route, called without credentials, answers what the document says: a 401
    whose body validates against the documented envelope (no database is touched before auth)."""
    from fastapi.testclient import TestClient

    client = TestClient(gateway, raise_server_exceptions=False)
    for method, path, operation in operations(document):
        if not operation["security"]:
            continue
        url = re.sub(r"\{[^}]+\}", "x1", path)
        response = client.request(method, url, json={} if "requestBody" in operation else None)
        assert response.status_code == 401, (method, path, response.text)
        body = ErrorResponse.model_validate(response.json())
        assert body.error.code == "unauthorized" and set(response.json()) == {"error"}


def test_validation_errors_match_the_documented_envelope(gateway) -> None:
    from fastapi.testclient import TestClient

    from capandex.auth import issue_dev_token
    from capandex.config import DEV_JWT_SECRET

    client = TestClient(gateway, raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET)}"}
    response = client.post("/api/engine/backtest", headers=headers,
                           json={"flowId": "f", "exchange": "binance", "timeframe": "2h", "bogus": 1})
    assert response.status_code == 422
    body = ErrorResponse.model_validate(response.json())
    assert {d.field for d in body.error.details} == {"symbol", "startDate", "endDate", "timeframe", "bogus"}


def test_metrics_are_typed_with_the_seed_names(document) -> None:
    schemas = document["components"]["schemas"]
    metrics_ref = schemas["BacktestPublic"]["properties"]["metrics"]["anyOf"][0]["$ref"]
    metrics = schemas[metrics_ref.rsplit("/", 1)[-1]]
    assert list(metrics["properties"]) == SEED_METRICS and set(metrics["required"]) == set(SEED_METRICS)
    assert metrics["properties"]["totalTrades"]["type"] == "integer"
    assert metrics["properties"]["profitFactor"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert "%" not in metrics["properties"]["winRate"]["description"] and \
        "0..1" in metrics["properties"]["winRate"]["description"]


def test_the_engine_computes_exactly_the_documented_metrics() -> None:
    """The model and the engine agree: the engine's metric names are the model's fields, and the
    documented exit reasons are the engine's."""
    import numpy as np

    from capandex.backtests.models import BacktestMetrics, TradePublic
    from capandex.engine.metrics import compute_metrics
    from capandex.engine.rules import REASONS

    metrics = compute_metrics(np.array([100.0, 90.0]), np.array([0, 86_400_000]), np.array([-10.0]), 100.0)
    assert list(metrics) == list(BacktestMetrics.model_fields) == SEED_METRICS
    reasons = TradePublic.model_json_schema()["properties"]["exitReason"]["enum"]
    assert tuple(reasons) == REASONS


def test_equity_points_keep_their_own_timestamp_types(document) -> None:
    """The backtest's curve has ISO 8601 strings, the performance curve epoch ms (as the seed
    shows): two schemas, two names, neither overwriting the other."""
    schemas = document["components"]["schemas"]
    assert schemas["EquityPoint"]["properties"]["timestamp"]["type"] == "string"
    assert schemas["PerformancePoint"]["properties"]["timestamp"]["type"] == "integer"
    curve = schemas["Performance"]["properties"]["equityCurve"]["items"]
    assert curve == {"$ref": "#/components/schemas/PerformancePoint"}


def test_each_function_document_agrees_with_the_merged_one(gateway, document) -> None:
    """Merging lost nothing: every function's schemas are in the merged document, unchanged."""
    for app in gateway.apps.values():
        for name, schema in app.openapi()["components"]["schemas"].items():
            assert document["components"]["schemas"][name] == schema, name


def test_the_merge_refuses_two_schemas_under_one_name() -> None:
    point = {"type": "object", "properties": {"timestamp": {"type": "string"}}}
    epoch = {"type": "object", "properties": {"timestamp": {"type": "integer"}}}
    same = merge_documents([("engine", {"components": {"schemas": {"Point": point}}}),
                            ("flows", {"components": {"schemas": {"Point": dict(point)}}})])
    assert same["components"]["schemas"] == {"Point": point}
    with pytest.raises(SchemaConflict, match=r"'Point'.*flows"):
        merge_documents([("engine", {"components": {"schemas": {"Point": point}}}),
                         ("flows", {"components": {"schemas": {"Point": epoch}}})])
    with pytest.raises(SchemaConflict, match="GET /api/x is defined twice"):
        merge_documents([("a", {"paths": {"/api/x": {"get": {}}}}), ("b", {"paths": {"/api/x": {"get": {}}}})])


def test_the_webhook_documents_what_it_reads(document) -> None:
    operation = document["paths"]["/api/webhooks/{flowId}/{token}"]["post"]
    content = operation["requestBody"]["content"]
    assert content["text/plain"]["schema"]["enum"] == ["buy", "sell"]
    assert content["application/json"]["schema"]["properties"]["action"]["anyOf"][0]["enum"] == ["buy", "sell"]
    assert operation["requestBody"]["required"] is False
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["X-Webhook-Id"]


# -- offline docs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/api/docs", "/api/redoc"])
def test_docs_pages_load_only_local_assets(gateway, page: str) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(gateway)
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "http://" not in html.text and "https://" not in html.text and "//cdn" not in html.text
    references = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"spec-url=\"([^\"]+)\"", html.text)
    assert references, html.text
    for reference in references:
        assert reference.startswith("/api/"), reference
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 1000, reference  # the real bundle, not an error page
    scripts = [r for r in references if r.endswith(".js")]
    assert scripts == (["/api/docs/assets/swagger-ui-bundle.js"] if page == "/api/docs"
                       else ["/api/docs/assets/redoc.standalone.js"])


def test_docs_assets_are_a_fixed_list(gateway) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(gateway)
    for path in ("/api/docs/assets/core.py", "/api/docs/assets/../__init__.py", "/api/docs/assets/"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
