"""Webhook calls cost the exchange nothing when they change nothing (issue 11): a duplicate and a
call over the rate limit are answered before the price is fetched, and a body nested past the
parser's limit is a 400 before the token is looked up."""

from __future__ import annotations

import pytest

from tests.functions.engine.test_live_routes import _flow

HOOK = [{"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}]


@pytest.fixture(autouse=True)
def exchange(binance_env):
    return binance_env


@pytest.fixture
def prices(monkeypatch) -> list[tuple[str, str]]:
    """Every price the webhook asks the exchange for."""
    from capandex.live import webhooks

    asked: list[tuple[str, str]] = []

    def price(exchange: str, symbol: str) -> float:
        asked.append((exchange, symbol))
        return 100.0

    monkeypatch.setattr(webhooks, "default_price", price)
    return asked


def test_duplicates_and_rate_limited_calls_fetch_no_price(api, configure, prices) -> None:
    configure(CAPANDEX_WEBHOOK_CALLS_PER_MINUTE="2")
    me = api.as_user()
    flow_id = _flow(me, HOOK)
    url = me.post(f"/api/flows/{flow_id}/webhook").json()["url"]
    assert me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"}).status_code == 200
    assert api.client.post(url, content=b'{"action": "buy", "id": "a1"}').json()["duplicate"] is False
    assert len(prices) == 1
    for _ in range(5):  # the sender retrying the same alert: answered from the database
        assert api.client.post(url, content=b'{"action": "buy", "id": "a1"}').json()["duplicate"] is True
    assert len(prices) == 1
    assert api.client.post(url, content=b'{"action": "sell", "id": "a2"}').status_code == 200
    assert len(prices) == 2
    for i in range(5):  # over the limit: refused before any exchange call
        limited = api.client.post(url, content=f'{{"id": "b{i}"}}'.encode())
        assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert len(prices) == 2


def test_a_webhook_body_nested_1300_deep_is_a_400(api, prices) -> None:
    """The reproduction: ``{"a":`` × 1,300 to an unknown webhook, unauthenticated, was a 500."""
    response = api.client.post("/api/webhooks/nope/nope", content=b'{"a":' * 1300)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == [{"field": "body", "message": "nests deeper than 32 levels"}]
    assert prices == []
