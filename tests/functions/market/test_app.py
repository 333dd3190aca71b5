"""``/api/exchanges`` and ``/api/market`` through the gateway, on Postgres, with the real ccxt
talking to the loopback Binance."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from tests.utils.binance_server import BinanceServer, rate_limit, server_error


@pytest.fixture
def client(api, binance_env: BinanceServer, instant_retries):
    return api.as_user()


def test_exchanges_lists_active_ones_by_sort_order(client) -> None:
    response = client.get("/api/exchanges")
    assert response.status_code == 200
    exchanges = response.json()["exchanges"]
    assert [e["id"] for e in exchanges] == ["binance", "okx", "bybit", "mexc", "coinbase", "kraken"]
    assert exchanges[0] == {"id": "binance", "name": "Binance", "ccxt_id": "binance", "is_active": True,
                            "sort_order": 1}


def test_inactive_exchange_is_hidden_and_refused(client) -> None:
    from capandex.db.schema import exchanges
    from capandex.db.session import transaction

    with transaction() as conn:
        conn.execute(update(exchanges).where(exchanges.c.id == "okx").values(is_active=False))
    try:
        assert "okx" not in [e["id"] for e in client.get("/api/exchanges").json()["exchanges"]]
        response = client.get("/api/market", params={"exchange": "okx", "action": "symbols"})
        assert response.status_code == 400
        assert "Supported exchanges: binance, bybit" in response.json()["error"]["message"]
    finally:
        with transaction() as conn:
            conn.execute(update(exchanges).where(exchanges.c.id == "okx").values(is_active=True))


def test_symbols(client, binance: BinanceServer) -> None:
    response = client.get("/api/market", params={"exchange": "binance", "action": "symbols"})
    assert response.status_code == 200
    assert response.json() == {"symbols": ["BTC/USDT", "ETH/BTC", "ETH/USDT", "SOL/USDT"]}
    client.get("/api/market", params={"exchange": "binance", "action": "symbols"})
    assert binance.count("/api/v3/exchangeInfo") == 1  # cached


def test_ticker(client, binance: BinanceServer) -> None:
    response = client.get("/api/market", params={"exchange": "binance", "symbol": "BTC/USDT"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"symbol", "last", "bid", "ask", "volume", "change24h", "timestamp"}
    assert body["symbol"] == "BTC/USDT" and body["timestamp"].endswith("Z")
    assert isinstance(body["change24h"], float)
    client.get("/api/market", params={"exchange": "binance", "symbol": "BTC/USDT"})
    assert binance.count("/api/v3/ticker/24hr") == 1  # short TTL cache


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"action": "symbols"}, 422, "exchange"),
    ({"exchange": "nasdaq", "action": "symbols"}, 400, "exchange"),
    ({"exchange": "binance", "action": "list"}, 400, "action"),
    ({"exchange": "binance"}, 400, "symbol"),
    ({"exchange": "binance", "symbol": "DOGE/USDT"}, 400, "symbol"),
])
def test_bad_input_names_the_field(client, params: dict, status: int, field: str) -> None:
    response = client.get("/api/market", params=params)
    assert response.status_code == status
    error = response.json()["error"]
    assert field in {d["field"] for d in error.get("details", [])} or field in error["message"]


def test_exchange_failures_map_to_429_and_503(client, binance: BinanceServer) -> None:
    client.get("/api/market", params={"exchange": "binance", "action": "symbols"})
    binance.inject("/api/v3/ticker/24hr", rate_limit(4), times=3)
    response = client.get("/api/market", params={"exchange": "binance", "symbol": "ETH/USDT"})
    assert response.status_code == 429 and response.headers["retry-after"] == "4"
    assert response.json()["error"]["code"] == "rate_limited"
    binance.inject("/api/v3/ticker/24hr", server_error(503), times=3)
    response = client.get("/api/market", params={"exchange": "binance", "symbol": "SOL/USDT"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"


def test_requires_authentication(api) -> None:
    assert api.client.get("/api/exchanges").status_code == 401
    assert api.client.get("/api/market", params={"exchange": "binance", "action": "symbols"}).status_code == 401
