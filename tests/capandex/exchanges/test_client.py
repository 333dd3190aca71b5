"""The real ccxt ``binance`` class against the loopback exchange: markets, tickers, candles,
settings (base URL, sandbox, timeout) and the per-container client cache."""

from __future__ import annotations

import json

import pytest

from capandex.errors import BadRequest
from capandex.exchanges import Credentials, get_client, rebase_urls
from capandex.exchanges.market import get_ticker, list_symbols
from tests.utils.binance_server import BinanceServer

START = 1_700_000_040_000  # a minute boundary (2023-11-14T22:14:00Z)


def test_symbols_are_active_spot_markets_loaded_from_spot_endpoints_only(binance_env: BinanceServer) -> None:
    client = get_client("binance")
    assert client.symbols() == ["BTC/USDT", "ETH/BTC", "ETH/USDT", "SOL/USDT"]  # LUNA (BREAK) is inactive
    client.symbols()
    # spot only, no currencies (private sapi), no futures exchangeInfo, markets loaded once
    assert binance_env.paths() == {"/api/v3/exchangeInfo": 1}
    assert binance_env.unhandled == []


def test_one_client_per_exchange_credentials_and_sandbox(binance_env: BinanceServer) -> None:
    plain = get_client("binance")
    assert get_client("binance") is plain
    keyed = get_client("binance", Credentials("k" * 16, "s" * 32))
    assert keyed is not plain and get_client("binance", Credentials("k" * 16, "s" * 32)) is keyed
    assert get_client("binance", Credentials("k" * 16, "other")) is not keyed
    sandbox = get_client("binance", sandbox=True)
    assert sandbox is not plain and sandbox.ccxt.isSandboxModeEnabled
    # CAPANDEX_EXCHANGE_URLS applies to the testnet URLs too: the sandbox client also hits the loopback
    assert sandbox.symbols()
    assert binance_env.count("/api/v3/exchangeInfo") == 1


def test_client_settings_rate_limit_timeout_spot_options(binance_env: BinanceServer) -> None:
    raw = get_client("binance").ccxt
    assert raw.enableRateLimit is True
    assert raw.timeout == 1000
    assert raw.options["fetchMarkets"]["types"] == ["spot"]
    assert raw.options["fetchCurrencies"] is False
    assert all(url.startswith(binance_env.url) for url in raw.urls["api"].values())


def test_ticker_has_the_reference_fields(binance_env: BinanceServer) -> None:
    ticker = get_client("binance").ticker("BTC/USDT")
    assert set(ticker) == {"symbol", "last", "bid", "ask", "volume", "change24h", "timestamp"}
    assert ticker["symbol"] == "BTC/USDT"
    assert ticker["bid"] < ticker["last"] < ticker["ask"]
    assert ticker["volume"] == pytest.approx(15234.56)
    _status, body, _ = binance_env.routes[("GET", "/api/v3/ticker/24hr")](_req({"symbol": "BTCUSDT"}))
    assert ticker["change24h"] == pytest.approx(float(body["priceChangePercent"]))
    assert ticker["timestamp"].endswith("Z") and "T" in ticker["timestamp"]


def _req(query: dict) -> object:
    from tests.utils.binance_server import Request

    return Request("GET", "/", query, {})


def test_ohlcv_page_in_binance_units(binance_env: BinanceServer) -> None:
    client = get_client("binance")
    assert client.max_page_size("1m") == 1000
    rows = client.ohlcv_page("ETH/USDT", "1m", START, 1000)
    expected = binance_env.expected_klines("ETHUSDT", "1m", START, START + 1000 * 60_000)
    assert [r[0] for r in rows] == expected[:, 0].astype(int).tolist()
    assert rows[5][4] == pytest.approx(expected[5, 4])
    request = binance_env.requests[-1]
    assert request.query == {"interval": "1m", "limit": "1000", "symbol": "ETHUSDT", "startTime": str(START)}


def test_unknown_symbol_and_timeframe_are_bad_requests(binance_env: BinanceServer) -> None:
    client = get_client("binance")
    with pytest.raises(BadRequest, match="no spot market 'DOGE/USDT'"):
        client.ticker("DOGE/USDT")
    with pytest.raises(BadRequest, match="no '7m' candles"):
        client.ohlcv_page("BTC/USDT", "7m", START, 10)
    assert binance_env.count("/api/v3/ticker/24hr") == 0  # refused before any request


def test_unknown_or_inactive_exchange_names_the_supported_ones(binance_env: BinanceServer) -> None:
    with pytest.raises(BadRequest) as info:
        get_client("nasdaq")
    assert "binance, okx, bybit, mexc, coinbase, kraken" in info.value.message
    assert info.value.details[0]["field"] == "exchange"


@pytest.mark.parametrize("exchange", ["mexc", "coinbase", "kraken"])
def test_sandbox_refused_where_the_exchange_has_none(binance_env: BinanceServer, exchange: str) -> None:
    # the real ccxt classes: they list urls["test"] = None, on which set_sandbox_mode raises TypeError
    with pytest.raises(BadRequest, match=f"{exchange} has no sandbox") as info:
        get_client(exchange, sandbox=True)
    assert info.value.details[0]["field"] == "sandbox"


def test_sandbox_setting_is_the_default(binance_env: BinanceServer, configure) -> None:
    from tests.utils.fixtures import reset_exchange_caches

    configure(CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env(), CAPANDEX_EXCHANGE_SANDBOX='["binance"]')
    reset_exchange_caches()
    assert get_client("binance").ccxt.isSandboxModeEnabled
    assert not get_client("binance", sandbox=False).ccxt.isSandboxModeEnabled


def test_rebase_urls_replaces_scheme_and_host_everywhere() -> None:
    urls = {"public": "https://api.binance.com/api/v3", "nested": {"x": "https://fapi.binance.com/fapi/v1?a=1"},
            "list": ["https://{hostname}/v5"], "other": 42}
    rebased = rebase_urls(urls, "http://127.0.0.1:9/prefix/")
    assert rebased == {"public": "http://127.0.0.1:9/prefix/api/v3",
                       "nested": {"x": "http://127.0.0.1:9/prefix/fapi/v1?a=1"},
                       "list": ["http://127.0.0.1:9/prefix/v5"], "other": 42}


def test_market_caches_symbols_and_tickers(binance_env: BinanceServer) -> None:
    assert list_symbols("binance") == list_symbols("binance")
    get_ticker("binance", "BTC/USDT")
    get_ticker("binance", "BTC/USDT")
    assert binance_env.paths() == {"/api/v3/exchangeInfo": 1, "/api/v3/ticker/24hr": 1}


def test_credentials_never_show_secrets() -> None:
    creds = Credentials("AKIAKEY123456789", "topsecret-value", "pass-phrase")
    for text in (repr(creds), str(creds), f"{creds}", json.dumps({"c": str(creds)})):
        assert "topsecret" not in text and "pass-phrase" not in text and "AKIAKEY1234" not in text
    assert "6789" in repr(creds)
    assert "topsecret" not in creds.fingerprint()
    assert creds.fingerprint() == Credentials("AKIAKEY123456789", "topsecret-value", "pass-phrase").fingerprint()
