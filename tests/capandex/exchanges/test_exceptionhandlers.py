"""freqtrade's ``ccxt_exceptionhandlers`` for every wrapper method: each exchange failure, as the
loopback Binance really sends it, maps to one Capandex error after the expected number of calls
(reads retry temporary failures; the retrier's waits are patched out)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from capandex import telemetry
from capandex.errors import (
    BadRequest,
    CapandexError,
    InvalidCredentials,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from capandex.exchanges import Credentials, ExchangeClient, get_client, retry
from capandex.exchanges.retry import DEFAULT_RETRIES
from tests.utils.binance_server import BinanceServer, error, rate_limit, server_error, timeout

START = 1_700_000_040_000

#: wrapper method → (loopback path it calls, how to call it)
METHODS: dict[str, tuple[str, Callable[[ExchangeClient], object]]] = {
    "symbols": ("/api/v3/exchangeInfo", lambda c: c.symbols()),
    "ticker": ("/api/v3/ticker/24hr", lambda c: c.ticker("BTC/USDT")),
    "ohlcv_page": ("/api/v3/klines", lambda c: c.ohlcv_page("BTC/USDT", "1m", START, 1000)),
    "fetch_balance": ("/api/v3/account", lambda c: c.fetch_balance()),
}

#: fault → (capandex error, calls made: 1 + retries for temporary failures)
FAULTS = {
    "429 Retry-After": (lambda: rate_limit(3), RateLimited, DEFAULT_RETRIES + 1),
    "418 ban": (lambda: rate_limit(3, status=418), RateLimited, DEFAULT_RETRIES + 1),
    "503": (lambda: server_error(503), UpstreamUnavailable, DEFAULT_RETRIES + 1),
    "504": (lambda: server_error(504), UpstreamUnavailable, DEFAULT_RETRIES + 1),
    "timeout": (lambda: timeout(0.5), UpstreamUnavailable, DEFAULT_RETRIES + 1),
    "bad symbol": (lambda: lambda *_: error(400, -1121, "Invalid symbol."), BadRequest, 1),
    "bad key": (lambda: lambda *_: error(401, -2015, "Invalid API-key, IP, or permissions for action."),
                InvalidCredentials, 1),
    "exchange error": (lambda: lambda *_: error(400, -1013, "Filter failure: PRICE_FILTER"), UpstreamError, 1),
    "garbled": (lambda: lambda *_: (200, "<html>maintenance</html>", {"Content-Type": "text/html"}),
                UpstreamError, 1),
}


def _account(_request):
    return 200, {"balances": [{"asset": "USDT", "free": "10.0", "locked": "0.0"}], "updateTime": 1,
                 "accountType": "SPOT", "permissions": ["SPOT"]}, {}


@pytest.fixture
def client(binance_env: BinanceServer, configure, monkeypatch: pytest.MonkeyPatch) -> ExchangeClient:
    from tests.utils.fixtures import reset_exchange_caches

    configure(CAPANDEX_EXCHANGE_URLS=binance_env.exchange_urls_env(), CAPANDEX_EXCHANGE_TIMEOUT_MS="200")
    reset_exchange_caches()
    waits: list[float] = []
    monkeypatch.setattr(retry, "sleep", waits.append)
    binance_env.route("GET", "/api/v3/account", _account)
    client = get_client("binance", Credentials("k" * 64, "s" * 64))
    client.symbols()  # markets loaded before the faults (symbols itself is tested on a fresh client)
    client.waits = waits  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_ccxt_exceptionhandlers(client: ExchangeClient, binance_env: BinanceServer, method: str, fault: str) -> None:
    path, call = METHODS[method]
    make_fault, expected, calls = FAULTS[fault]
    if method == "symbols":  # force a fresh market load through the fault
        client.ccxt.markets = None
    binance_env.inject(path, make_fault(), times=10)
    binance_env.reset_log()
    with pytest.raises(expected) as info, telemetry.recording("test") as counts:
        call(client)
    assert type(info.value) is expected
    assert binance_env.count(path) == calls
    # operators see every failed call to the exchange; a user's bad input is not an upstream error
    upstream_failures = calls if expected in (RateLimited, UpstreamUnavailable, UpstreamError) else 0
    assert counts[(telemetry.Metric.UPSTREAM_ERRORS, (("upstream", "binance"),))] == upstream_failures
    assert len(client.waits) == calls - 1  # type: ignore[attr-defined]
    _assert_no_secret(info.value)
    if expected is RateLimited:
        assert info.value.headers["Retry-After"] == "3"
        assert client.waits == [3.0] * (calls - 1)  # type: ignore[attr-defined]


def test_a_temporary_failure_then_success_is_retried(client: ExchangeClient, binance_env: BinanceServer) -> None:
    binance_env.inject("/api/v3/klines", server_error(502), times=DEFAULT_RETRIES)
    rows = client.ohlcv_page("BTC/USDT", "1m", START, 10)
    assert len(rows) == 10
    assert client.waits == [0.25, 0.5]  # type: ignore[attr-defined]


def test_fetch_balance_is_ccxts_unified_balance(client: ExchangeClient) -> None:
    balance = client.fetch_balance()
    assert balance["USDT"]["free"] == 10.0 and balance["total"]["USDT"] == 10.0


def test_unreachable_exchange_is_unavailable(configure, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.utils.fixtures import reset_exchange_caches

    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    configure(CAPANDEX_EXCHANGE_URLS='{"binance": "http://127.0.0.1:9"}', CAPANDEX_EXCHANGE_TIMEOUT_MS="500")
    reset_exchange_caches()
    with pytest.raises(UpstreamUnavailable, match="binance could not be reached"):
        get_client("binance").symbols()
    reset_exchange_caches()


def _assert_no_secret(exc: CapandexError) -> None:
    text = f"{exc.message} {exc.details} {exc.headers}"
    assert "s" * 64 not in text and "k" * 64 not in text and "signature=" not in text.replace("signature=***", "")
    assert "http://" not in text


def test_binance_spot_signature_error_is_invalid_credentials() -> None:
    """ccxt files Binance spot's -1022 under BadRequest; for us it means the secret is wrong."""
    import ccxt

    from capandex.errors import BadRequest, InvalidCredentials
    from capandex.exchanges.errors import ccxt_errors

    with pytest.raises(InvalidCredentials), ccxt_errors("binance", "fetching the balance"):
        raise ccxt.BadRequest('binance {"code":-1022,"msg":"Signature for this request is not valid."}')
    with pytest.raises(BadRequest), ccxt_errors("binance", "fetching the balance"):
        raise ccxt.BadRequest('binance {"code":-1100,"msg":"Illegal characters found."}')


def test_retries_stop_where_another_attempt_would_outlast_the_request(configure, monkeypatch) -> None:
    """With the 10 s default timeout, a third attempt could end past API Gateway's 29 s: the read
    gives up after two (a JSON 503) instead of being cut off with a bare 504."""
    configure(CAPANDEX_EXCHANGE_TIMEOUT_MS="10000")
    clock = [0.0]
    monkeypatch.setattr(retry, "monotonic", lambda: clock[0])
    monkeypatch.setattr(retry, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    calls = []

    @retry.retrier(retries=5)
    def hangs_until_the_timeout():
        calls.append(clock[0])
        clock[0] += 10.0  # each attempt runs into the exchange timeout
        raise UpstreamUnavailable("binance could not be reached or timed out.")

    with pytest.raises(UpstreamUnavailable):
        hangs_until_the_timeout()
    assert calls == [0.0, 10.25] and clock[0] < retry.RETRY_BUDGET_S
