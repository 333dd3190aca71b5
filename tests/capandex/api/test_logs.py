"""Secrets are scrubbed from every log record, whatever logger or handler sees it."""

from __future__ import annotations

import logging

from capandex.auth import issue_dev_token
from capandex.config import DEV_JWT_SECRET
from capandex.logs import configure_logging, scrub


def test_scrub_removes_jwts_anthropic_keys_and_bearer_values() -> None:
    token = issue_dev_token(__import__("uuid").uuid4(), DEV_JWT_SECRET)
    text = f"auth={token} key=sk-ant-api03-abcdefghijkl header=Bearer abcdefghijklmnop1234"
    cleaned = scrub(text)
    assert token not in cleaned and "sk-ant-api03" not in cleaned and "abcdefghijklmnop1234" not in cleaned
    assert cleaned.count("[redacted]") == 3


def test_records_are_scrubbed_for_every_handler(caplog) -> None:
    configure_logging()
    token = issue_dev_token(__import__("uuid").uuid4(), DEV_JWT_SECRET)
    with caplog.at_level(logging.INFO):
        logging.getLogger("somebody.else").info("got %s", token)
        logging.getLogger("capandex.api").warning("header Bearer %s", "sk-ant-zzzzzzzzzzzz")
    assert token not in caplog.text and "sk-ant-zzzz" not in caplog.text
    assert caplog.text.count("[redacted]") == 2


def _buggy_app():
    """An app with Capandex's error handling and one route with a bug."""
    from fastapi import APIRouter

    from capandex.api.app import create_app

    router = APIRouter()

    @router.get("/api/flows/bug")
    def bug() -> dict:
        return {"ratio": 1 / 0}

    @router.post("/api/webhooks/{flowId}/{token}")
    def hook(flowId: str, token: str) -> dict:
        return {"fired": False}

    return create_app("bugs", [router])


def _event(method: str, path: str) -> dict:
    return {"resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": {"Host": "x.example"},
            "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
            "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": path, "stage": "prod",
                               "requestId": "req-1234", "identity": {"sourceIp": "127.0.0.1"}}}


def test_an_unhandled_error_is_one_error_record_with_the_correlation_id(caplog) -> None:
    """In Lambda (Mangum): a bare 500, and exactly one ERROR record carrying the traceback once;
    neither Starlette nor Mangum logs it again (each used to add its own ~10 KB traceback)."""
    from capandex.api.app import lambda_handler

    handler = lambda_handler(_buggy_app())
    with caplog.at_level(logging.INFO):
        response = handler(_event("GET", "/api/flows/bug"), None)
    assert response["statusCode"] == 500
    assert "ZeroDivisionError" not in response["body"] and "internal_error" in response["body"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [(r.name, r.getMessage()) for r in errors]
    (error,) = errors
    assert error.name == "capandex.api" and error.correlation_id == "req-1234" and error.exc_info
    assert caplog.text.count("ZeroDivisionError") == 1
    access = [r for r in caplog.records if r.getMessage() == "request"]
    assert [(r.status, r.correlation_id) for r in access] == [(500, "req-1234")]


def test_an_unhandled_error_under_uvicorn_is_logged_once(caplog) -> None:
    """``capandex serve``: uvicorn does not see the exception, so it writes no second traceback."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_buggy_app(), host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    with caplog.at_level(logging.INFO):
        thread.start()
        try:
            while not server.started:
                time.sleep(0.02)
            response = httpx.get(f"http://127.0.0.1:{port}/api/flows/bug", headers={"x-request-id": "abc-1"})
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    assert response.status_code == 500 and response.headers["x-correlation-id"] == "abc-1"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.correlation_id) for r in errors] == [("capandex.api", "abc-1")]


def test_webhook_tokens_stay_out_of_the_access_log(caplog) -> None:
    from capandex.api.app import lambda_handler

    token = "tok_" + "x" * 40
    handler = lambda_handler(_buggy_app())
    with caplog.at_level(logging.INFO):
        response = handler(_event("POST", f"/api/webhooks/flow_abc/{token}"), None)
    assert response["statusCode"] == 200
    (access,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert access.path == "/api/webhooks/flow_abc/[redacted]"
    assert token not in caplog.text
    assert scrub(f"POST https://api.example/api/webhooks/flow_abc/{token}?x=1 failed") == \
        "POST https://api.example/api/webhooks/flow_abc/[redacted]?x=1 failed"
