"""ccxt clients: one per (exchange, credentials, sandbox) per container, markets loaded once.

The :mod:`capandex.exchanges` package is the only code that imports ccxt, and it imports ccxt
lazily, inside the functions that need it, so a cold start of a function that never talks to an
exchange does not pay for it. Callers outside the package see :class:`ExchangeClient`'s methods,
Capandex's error classes and plain data (:class:`~capandex.exchanges.orders.ExchangeOrder`), never
a ccxt object.

Differences between exchanges are data (:data:`EXCHANGE_OPTIONS`, and for orders
:data:`capandex.exchanges.orders.CLIENT_ORDER_IDS`), not branches.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from capandex.errors import BadRequest, RateLimited, UpstreamError
from capandex.exchanges.credentials import Credentials
from capandex.exchanges.errors import DEFAULT_RETRY_AFTER, ccxt_errors, counted
from capandex.exchanges.limits import KeyLimit, RequestBudget, key_limit
from capandex.exchanges.orders import CLIENT_ORDER_IDS, ClientIdSupport, ExchangeOrder, first_found
from capandex.exchanges.retry import retrier
from capandex.exchanges.stops import StopOrderMethods
from capandex.timeutil import from_ms, iso_utc, utcnow

T = TypeVar("T")

#: ccxt options per ccxt id: load spot markets only where ccxt allows restricting them, and skip
#: currency and margin-pair loading that need private endpoints (Binance's sapi calls when keys are set).
#: OKX places an order through its single-order endpoint (``POST /api/v5/trade/order``) rather than
#: ccxt's default batch endpoint: Capandex places one order per call. Its ``defaultMarginMode`` is
#: ``cash``: ccxt sends a spot stop-loss (an algo order) with ``tdMode`` set to that option, ``cross``
#: by default — a *margin* order, which an account in OKX's Spot mode refuses (51010) and a margin
#: account executes by borrowing when the coins are gone (an algo order reserves nothing while it
#: waits). Capandex trades spot with what the account holds: ``cash``, as its market orders are.
EXCHANGE_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
    "okx": {"fetchMarkets": {"types": ["spot"]}, "createOrder": "privatePostTradeOrder", "defaultMarginMode": "cash"},
    "bybit": {"fetchMarkets": {"types": ["spot"]}},
    "mexc": {"fetchMarkets": {"types": {"spot": True, "swap": {"linear": False, "inverse": False}}}},
}

#: ccxt capabilities switched off per ccxt id. OKX and Bybit load currencies from private endpoints
#: once keys are set (``GET /api/v5/asset/currencies``, ``GET /v5/asset/coin/query-info``), which a
#: trade-only key may not read — loading markets, and so every order, would fail — and which spot
#: orders do not need; without keys ccxt skips them anyway. (Binance does the same via an option.)
EXCHANGE_CAPABILITIES: dict[str, dict[str, bool]] = {
    "okx": {"fetchCurrencies": False},
    "bybit": {"fetchCurrencies": False},
}

#: page size used when ccxt does not publish the exchange's OHLCV limit
DEFAULT_PAGE_SIZE = 500

#: exchanges (ccxt ids) whose OHLCV request with an end answers the candles nearest that end, not
#: those from ``since``: OKX's ``after`` and Bybit's ``end`` give the newest ``limit`` before it (a
#: chunk's page brought its last 300 candles, and the 11,700 before them were taken for gaps), and
#: Coinbase refuses more than 350 candles between ``start`` and ``end``. A page there asks for one
#: page's window, ``[since, since + limit × timeframe)``.
WINDOWED_OHLCV = frozenset({"okx", "bybit", "coinbase"})

#: no crypto candle exists before Bitcoin's genesis block (2009-01-03T00:00:00Z), epoch ms
CRYPTO_EPOCH_MS = 1_230_940_800_000
#: the day each exchange opened (epoch ms; no candle of it is older): a range sent to an exchange
#: starts no earlier, so a long look-back never asks for decades of empty pages or negative times
FIRST_CANDLE_MS: dict[str, int] = {
    "kraken": 1_378_684_800_000,  # 2013-09-09
    "okx": 1_356_998_400_000,  # 2013-01-01 (as OKCoin)
    "coinbase": 1_420_070_400_000,  # 2015-01-01 (Coinbase Exchange)
    "binance": 1_499_990_400_000,  # 2017-07-14
    "bybit": 1_514_764_800_000,  # 2018-01-01
    "mexc": 1_514_764_800_000,  # 2018-01-01
}


class ExchangeClient(StopOrderMethods):
    """One ccxt exchange instance with Capandex's error mapping, retries and thread safety.

    ccxt's synchronous classes are not thread-safe (one throttle timestamp, one
    ``last_response_headers``, lazy market loading), so every call holds the client's lock: the
    rate limiter then also holds across threads sharing the client. ``.ccxt`` is the raw instance,
    for this package only.

    Reads are retried on temporary failures (:func:`~capandex.exchanges.retry.retrier`); placing an
    order never is (placing it twice is worse than failing once), while looking one up is.
    """

    def __init__(self, exchange_id: str, instance: Any, *, lock: threading.RLock | None = None,
                 budget: RequestBudget | None = None) -> None:
        self.id = exchange_id
        self.ccxt = instance
        self.lock = lock or threading.RLock()
        self.budget = budget

    def with_budget(self, budget: RequestBudget) -> ExchangeClient:
        """This client (the same ccxt instance and lock) asking ``budget`` before every request it
        sends, retries included (:mod:`capandex.exchanges.limits`)."""
        return ExchangeClient(self.id, self.ccxt, lock=self.lock, budget=budget)

    def __repr__(self) -> str:
        return f"ExchangeClient({self.id!r}, sandbox={bool(getattr(self.ccxt, 'isSandboxModeEnabled', False))})"

    # -- plumbing -------------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (a ccxt method) under the lock with errors translated (``what`` names it)."""
        return self._call(what, lambda: fn(*args, **kwargs))

    def _call(self, what: str, fn: Callable[[], T], *, orders: bool = False) -> T:
        if self.budget is not None:
            self.budget.acquire()  # before the lock: waiting for a slot must not block other threads
        with self.lock:
            self.ccxt.last_json_response = None
            try:
                with ccxt_errors(self.id, what, orders=orders,
                                 response_headers=lambda: self.ccxt.last_response_headers):
                    result = fn()
            except RateLimited as exc:
                if self.budget is not None:
                    self.budget.back_off(float(exc.headers.get("Retry-After", DEFAULT_RETRY_AFTER)))
                raise
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
            markets: dict[str, Any] = self.ccxt.markets
            return markets

    @retrier
    def reload_markets(self) -> None:
        """Fetch the market list again (the cached copy is otherwise kept for the container's life)."""
        self.call("loading markets", self.ccxt.load_markets, True)

    def market(self, symbol: str) -> dict[str, Any]:
        """The ccxt market of a spot ``symbol``; :class:`BadRequest` when unknown or not spot."""
        market: dict[str, Any] | None = self._markets().get(symbol)
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

    @property
    def first_candle_ms(self) -> int:
        """The earliest open time any candle of this exchange can have (epoch ms)."""
        return FIRST_CANDLE_MS.get(self.id, CRYPTO_EPOCH_MS)

    @retrier
    def ohlcv_page(self, symbol: str, timeframe: str, since_ms: int, limit: int,
                   until_ms: int | None = None) -> list[list[float]]:
        """One page of candles ``[[time_ms, open, high, low, close, volume], …]`` from ``since_ms``
        (inclusive), at most ``limit`` rows, none opening after ``until_ms`` when given. Rows are
        as the exchange sent them: the caller sorts, de-duplicates and drops unclosed candles.
        ``since_ms`` is clamped to the exchange's first candle (:data:`FIRST_CANDLE_MS`, never
        before 2009): a range entirely before it is an empty page, with no request."""
        since_ms = max(since_ms, self.first_candle_ms)
        if until_ms is not None and until_ms < since_ms:
            return []
        self.market(symbol)
        if timeframe not in (self.ccxt.timeframes or {}):
            raise BadRequest(f"{self.id} has no '{timeframe}' candles.",
                             details=[{"field": "timeframe", "message": "unsupported timeframe"}])
        if until_ms is not None and self.ccxt.id in WINDOWED_OHLCV:
            return self._first_window_with_candles(symbol, timeframe, since_ms, limit, until_ms)
        params = {"until": until_ms} if until_ms is not None else {}
        return self.call(f"fetching {timeframe} candles of {symbol}", self.ccxt.fetch_ohlcv,
                         symbol, timeframe, since_ms, limit, params)

    def _first_window_with_candles(self, symbol: str, timeframe: str, since_ms: int, limit: int,
                                   until_ms: int) -> list[list[float]]:
        """:meth:`ohlcv_page` on a :data:`WINDOWED_OHLCV` exchange: windows of ``limit`` candles from
        ``since_ms`` (the market's listing, when ccxt knows it and it is later) until one holds
        candles or ``until_ms`` is passed — an empty window is a gap of the exchange, not the end."""
        window_ms = limit * self.ccxt.parse_timeframe(timeframe) * 1000
        since_ms = max(since_ms, self.market(symbol).get("created") or 0)
        while since_ms <= until_ms:
            rows: list[list[float]] = self.call(
                f"fetching {timeframe} candles of {symbol}", self.ccxt.fetch_ohlcv, symbol, timeframe, since_ms,
                limit, {"until": min(until_ms, since_ms + window_ms - 1)})
            if rows:
                return rows
            since_ms += window_ms
        return []

    @retrier
    def fetch_balance(self) -> dict[str, Any]:
        """ccxt's unified balance (``{"free": {...}, "used": {...}, "total": {...}, "USDT": {...}}``)."""
        return self.call("fetching the balance", self.ccxt.fetch_balance)

    def free_balance(self, asset: str) -> float | None:
        """The free (not locked in orders) balance of ``asset``; None when the exchange did not list it."""
        value = (self.fetch_balance().get("free") or {}).get(asset)
        return None if value is None else float(value)

    # -- orders ------------------------------------------------------------------------------------
    @property
    def client_order_ids(self) -> ClientIdSupport:
        """How this exchange carries client order ids; :class:`BadRequest` where Capandex has no
        verified way to find an order by client id (live trading there could not be exactly once)."""
        support = CLIENT_ORDER_IDS.get(self.ccxt.id)
        if support is None:
            raise BadRequest(f"{self.id} offers no lookup of orders by client order id, which live trading "
                             f"needs; trade on {', '.join(CLIENT_ORDER_IDS)}.")
        return support

    def create_market_order(self, symbol: str, side: str, amount: float, client_order_id: str) -> ExchangeOrder:
        """Place a spot market order of ``amount`` base units (``side``: buy or sell) carrying
        ``client_order_id``. Never retried. Where the exchange only acknowledges the order (OKX,
        Bybit), the order is looked up by its id; if the lookup does not see it yet, the
        acknowledgement comes back with status ``open`` (accepted, fill not yet known).

        Raises:
            InsufficientBalance, SymbolNotTradable, OrderRejected: refused for good.
            DuplicateClientOrderId: an order with this id exists: look it up.
            UpstreamUnavailable, RateLimited, UpstreamError: the outcome is unknown: look the id up.
            BadRequest: no client-order-id support (:attr:`client_order_ids`), or another refusal.
        """
        params = {self.client_order_ids.create_param: client_order_id}
        raw = self._call(f"placing a {side} order of {amount:.8g} {symbol}",
                         lambda: self.ccxt.create_order(symbol, "market", side, amount, None, params), orders=True)
        order = ExchangeOrder.from_ccxt(raw)
        if not order.acknowledgement:
            return order
        found = self.fetch_order_by_client_id(symbol, client_order_id)
        return found or ExchangeOrder(order.id, client_order_id, side, "open", amount, None, None, None, None)

    @retrier
    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order on ``symbol`` with ``client_order_id``; None when the exchange does not know the
        id (through every lookup of :data:`~capandex.exchanges.orders.CLIENT_ORDER_IDS`)."""
        found = first_found(self.client_order_ids.lookups, lambda lookup: self._call(
            f"looking up order {client_order_id}", lookup.bind(self.ccxt, symbol, client_order_id), orders=True),
            client_order_id)
        return None if found is None else ExchangeOrder.from_ccxt(found)

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        """``amount`` cut down to the market's amount precision; 0.0 when nothing is left."""
        import ccxt

        self.market(symbol)
        with self.lock:
            try:
                return float(self.ccxt.amount_to_precision(symbol, amount))
            except ccxt.BaseError:  # ccxt refuses an amount that rounds to zero
                return 0.0

    def min_order_amount(self, symbol: str) -> float:
        """The market's minimum order amount in base units (0.0 when the exchange sets none)."""
        limits = (self.market(symbol).get("limits") or {}).get("amount") or {}
        return float(limits.get("min") or 0.0)

    # -- facts -----------------------------------------------------------------------------------
    @property
    def key_limit(self) -> KeyLimit:
        """The request budget of one API key on this exchange (:data:`~capandex.exchanges.limits.KEY_LIMITS`)."""
        return key_limit(self.ccxt.id)

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
    ``timeout_ms``, :data:`EXCHANGE_OPTIONS` and :data:`EXCHANGE_CAPABILITIES`, the credentials,
    the sandbox (:class:`BadRequest` when ccxt knows none for the exchange) and ``base_url`` in
    place of the exchange's API host."""
    import ccxt

    install_log_guard()
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms, "enableLastJsonResponse": True,
                              "options": copy.deepcopy(EXCHANGE_OPTIONS.get(ccxt_id, {})),
                              "has": dict(EXCHANGE_CAPABILITIES.get(ccxt_id, {}))}
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
