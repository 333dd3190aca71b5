"""ccxt clients: one per (exchange, credentials, sandbox) per container, markets loaded once.

The :mod:`capandex.exchanges` package is the only code that imports ccxt, and it imports ccxt
lazily, inside the functions that need it, so a cold start of a function that never talks to an
exchange does not pay for it (order code elsewhere uses :attr:`ExchangeClient.ccxt`).

Differences between exchanges are data (:data:`EXCHANGE_OPTIONS`), not branches.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from capandex.errors import BadRequest, UpstreamError
from capandex.exchanges.credentials import Credentials
from capandex.exchanges.errors import ccxt_errors, counted
from capandex.exchanges.retry import retrier
from capandex.timeutil import from_ms, iso_utc, utcnow

T = TypeVar("T")

#: ccxt options per ccxt id: load spot markets only where ccxt allows restricting them, and skip
#: currency and margin-pair loading that need private endpoints (Binance's sapi calls when keys are set).
EXCHANGE_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
    "okx": {"fetchMarkets": {"types": ["spot"]}},
    "bybit": {"fetchMarkets": {"types": ["spot"]}},
    "mexc": {"fetchMarkets": {"types": {"spot": True, "swap": {"linear": False, "inverse": False}}}},
}

#: page size used when ccxt does not publish the exchange's OHLCV limit
DEFAULT_PAGE_SIZE = 500


class ExchangeClient:
    """One ccxt exchange instance with Capandex's error mapping, retries and thread safety.

    ccxt's synchronous classes are not thread-safe (one throttle timestamp, one
    ``last_response_headers``, lazy market loading), so every call holds the client's lock: the
    rate limiter then also holds across threads sharing the client. ``.ccxt`` is the raw instance
    for order code elsewhere (which must hold :attr:`lock` too and translate errors with
    :func:`capandex.exchanges.errors.ccxt_errors`).
    """

    def __init__(self, exchange_id: str, instance: Any) -> None:
        self.id = exchange_id
        self.ccxt = instance
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ExchangeClient({self.id!r}, sandbox={bool(getattr(self.ccxt, 'isSandboxModeEnabled', False))})"

    # -- plumbing -------------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (a ccxt method) under the lock with errors translated (``what`` names it)."""
        with self.lock:
            self.ccxt.last_json_response = None
            with ccxt_errors(self.id, what, response_headers=lambda: self.ccxt.last_response_headers):
                result = fn(*args, **kwargs)
            if self.ccxt.last_json_response is None:
                # ccxt turns a non-JSON answer (a maintenance page) into None and then into an
                # empty result; an empty candle page would be cached as "no data" for good.
                raise counted(self.id, UpstreamError(f"{self.id} sent an unreadable answer while {what}."))
            return result

    def _markets(self) -> dict[str, Any]:
        with self.lock:
            if not self.ccxt.markets:
                self.call("loading markets", self.ccxt.load_markets)
            if not self.ccxt.markets:  # an unparseable answer leaves ccxt with no markets, silently
                self.ccxt.markets = None
                raise counted(self.id, UpstreamError(f"{self.id} sent no markets; it may be under maintenance."))
            return self.ccxt.markets

    @retrier
    def reload_markets(self) -> None:
        """Fetch the market list again (the cached copy is otherwise kept for the container's life)."""
        self.call("loading markets", self.ccxt.load_markets, True)

    def market(self, symbol: str) -> dict[str, Any]:
        """The ccxt market of a spot ``symbol``; :class:`BadRequest` when unknown or not spot."""
        market = self._markets().get(symbol)
        if market is None or not market.get("spot", True):
            raise BadRequest(f"{self.id} has no spot market '{symbol}'.",
                             details=[{"field": "symbol", "message": "unknown symbol on this exchange"}])
        return market

    # -- reads (retried) -------------------------------------------------------------------------
    @retrier
    def symbols(self) -> list[str]:
        """Active spot symbols (``BTC/USDT``…), sorted."""
        markets = self._markets()
        return sorted(s for s, m in markets.items() if m.get("spot", True) and m.get("active") is not False)

    @retrier
    def ticker(self, symbol: str) -> dict[str, Any]:
        """The API reference's ticker: symbol, last, bid, ask, volume (base units), change24h (24 h
        change in percent), timestamp (ISO 8601 UTC)."""
        self.market(symbol)
        raw = self.call(f"fetching the ticker of {symbol}", self.ccxt.fetch_ticker, symbol)
        return {"symbol": symbol, "last": raw.get("last"), "bid": raw.get("bid"), "ask": raw.get("ask"),
                "volume": raw.get("baseVolume"), "change24h": raw.get("percentage"),
                "timestamp": _iso_ms(raw.get("timestamp"))}

    @retrier
    def ohlcv_page(self, symbol: str, timeframe: str, since_ms: int, limit: int,
                   until_ms: int | None = None) -> list[list[float]]:
        """One page of candles ``[[time_ms, open, high, low, close, volume], …]`` from ``since_ms``
        (inclusive), at most ``limit`` rows, none opening after ``until_ms`` when given. Rows are
        as the exchange sent them: the caller sorts, de-duplicates and drops unclosed candles."""
        self.market(symbol)
        if timeframe not in (self.ccxt.timeframes or {}):
            raise BadRequest(f"{self.id} has no '{timeframe}' candles.",
                             details=[{"field": "timeframe", "message": "unsupported timeframe"}])
        params = {"until": until_ms} if until_ms is not None else {}
        return self.call(f"fetching {timeframe} candles of {symbol}", self.ccxt.fetch_ohlcv,
                         symbol, timeframe, since_ms, limit, params)

    @retrier
    def fetch_balance(self) -> dict[str, Any]:
        """ccxt's unified balance (``{"free": {...}, "used": {...}, "total": {...}, "USDT": {...}}``)."""
        return self.call("fetching the balance", self.ccxt.fetch_balance)

    # -- facts -----------------------------------------------------------------------------------
    def max_page_size(self, timeframe: str) -> int:
        """The most candles the exchange returns per OHLCV request (ccxt's published spot limit)."""
        features = (self.ccxt.features or {}).get("spot") or {}
        limit = (features.get("fetchOHLCV") or {}).get("limit")
        return int(limit) if limit else DEFAULT_PAGE_SIZE

    @property
    def rate_limit_ms(self) -> float:
        """ccxt's minimum spacing between two requests of cost 1, in milliseconds."""
        return float(self.ccxt.rateLimit)


def _iso_ms(epoch_ms: Any) -> str:
    return iso_utc(from_ms(epoch_ms) if isinstance(epoch_ms, int | float) else utcnow())


def rebase_urls(urls: Any, base: str) -> Any:
    """``urls`` (a string or nested dicts/lists of them) with scheme and host replaced by ``base``
    (whose own path, if any, is kept as a prefix); non-URL values are left alone."""
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base) for key, value in urls.items()}
    if isinstance(urls, list):
        return [rebase_urls(value, base) for value in urls]
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        parts = urlsplit(urls)
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        return base.rstrip("/") + rest
    return urls


_clients: dict[tuple[Any, ...], ExchangeClient] = {}
_clients_lock = threading.Lock()


def get_client(exchange_id: str, credentials: Credentials | None = None, *,
               sandbox: bool | None = None) -> ExchangeClient:
    """The container's client for an active exchange (created on first use, then reused).

    Args:
        exchange_id: an id of the ``exchanges`` table; inactive or unknown ids raise
            :class:`BadRequest` naming the supported ones.
        credentials: API keys for private calls; clients are cached per credentials fingerprint.
        sandbox: use the exchange's testnet; ``None`` takes ``CAPANDEX_EXCHANGE_SANDBOX``. Refused
            with :class:`BadRequest` when ccxt knows no sandbox URL for the exchange.
    """
    from capandex.config import get_settings
    from capandex.exchanges.registry import resolve

    settings = get_settings()
    ccxt_id = resolve(exchange_id)
    if sandbox is None:
        sandbox = exchange_id in settings.exchange_sandbox
    base_url = settings.exchange_urls.get(exchange_id) or settings.exchange_urls.get(ccxt_id)
    key = (exchange_id, credentials.fingerprint() if credentials else None, sandbox, base_url,
           settings.exchange_timeout_ms)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = ExchangeClient(
                exchange_id, new_instance(ccxt_id, credentials, sandbox, base_url, settings.exchange_timeout_ms))
    return client


class _DropWireLogs(logging.Filter):
    """Drops ccxt's DEBUG request/response dumps: their headers carry API keys and passphrases
    (``X-MBX-APIKEY``, ``OK-ACCESS-PASSPHRASE`` …) and their bodies balances, so a DEBUG log
    level never writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def install_log_guard() -> None:
    """Attach the filter to ccxt's logger once (idempotent); done before any instance exists."""
    ccxt_logger = logging.getLogger("ccxt.base.exchange")
    if not any(isinstance(f, _DropWireLogs) for f in ccxt_logger.filters):
        ccxt_logger.addFilter(_DropWireLogs())


def new_instance(ccxt_id: str, credentials: Credentials | None, sandbox: bool, base_url: str | None,
                 timeout_ms: int) -> Any:
    """A new, uncached ccxt instance configured as Capandex configures every one: rate limiting,
    ``timeout_ms``, :data:`EXCHANGE_OPTIONS`, the credentials, the sandbox (:class:`BadRequest`
    when ccxt knows none for the exchange) and ``base_url`` in place of the exchange's API host."""
    import ccxt

    install_log_guard()
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms, "enableLastJsonResponse": True,
                              "options": copy.deepcopy(EXCHANGE_OPTIONS.get(ccxt_id, {}))}
    if credentials is not None:
        config.update(apiKey=credentials.api_key, secret=credentials.secret)
        if credentials.passphrase:
            config["password"] = credentials.passphrase
    instance = getattr(ccxt, ccxt_id)(config)
    if sandbox:
        # ccxt lists ``urls["test"] = None`` for exchanges without a testnet (mexc, coinbase,
        # kraken), and its set_sandbox_mode then fails with a bare TypeError
        if not instance.urls.get("test"):
            raise BadRequest(f"{ccxt_id} has no sandbox/testnet; turn sandbox mode off for it.",
                             details=[{"field": "sandbox", "message": "not available on this exchange"}])
        instance.set_sandbox_mode(True)
    if base_url:
        instance.urls["api"] = rebase_urls(instance.urls["api"], base_url)
    return instance


def clear_clients() -> None:
    """Drop every cached client (tests; or after rotating credentials)."""
    with _clients_lock:
        _clients.clear()
