"""A loopback Binance: the public spot REST endpoints ccxt's ``binance`` class calls, in Binance's
own wire formats, with injectable faults. The real ccxt talks to it through
``CAPANDEX_EXCHANGE_URLS={"binance": server.url}``.

Served (``/api/v3/…``, what ccxt's spot market loading, ``fetch_ohlcv`` and ``fetch_ticker`` call):
``exchangeInfo``, ``klines`` (symbol, interval, startTime, endTime, limit; default 500, max 1000),
``ticker/24hr``, ``time``, ``ping``. Every other path answers 404 and is recorded in
:attr:`BinanceServer.unhandled`, so a test can assert that nothing else was called.

Candles come from a deterministic generator (a seeded, smooth, noisy wave) for any symbol and
time, so any two runs agree and a test can recompute the expected values
(:meth:`BinanceServer.expected_klines`). Unclosed candles are served, as Binance does.

The HTTP plumbing (routes, faults, request log, life cycle) is :class:`~tests.utils.loopback_exchange.LoopbackExchange`.
Extension point (signed and order endpoints live in their own modules)::

    def account(request: Request) -> Response:   # (status, json body, headers)
        return 200, {"balances": [...]}, {}
    server.route("GET", "/api/v3/account", account)

Faults (consumed in order, per path)::

    server.inject("/api/v3/klines", rate_limit(retry_after=2))        # 429 + Retry-After, once
    server.inject("/api/v3/klines", server_error(503), times=3)
    server.inject("/api/v3/klines", timeout(1.5))                      # answer after 1.5 s
    server.inject("/api/v3/klines", short_page(10))                    # only 10 rows
    server.inject("/api/v3/klines", duplicated(5))                     # 5 rows sent twice
    server.gaps.append((start_ms, end_ms))                             # no candles there, ever
    server.latency_s = 0.05                                            # every request
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from tests.utils.loopback_exchange import Fault, Handler, LoopbackExchange, Request, Response, server_error, timeout

__all__ = ["BinanceServer", "Fault", "Handler", "Request", "Response", "duplicated", "error", "rate_limit",
           "server_error", "short_page", "timeout"]

INTERVAL_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000}

#: (base, quote, status, base price) of the default market list; BREAK markets are inactive
DEFAULT_MARKETS = (("BTC", "USDT", "TRADING", 40_000.0), ("ETH", "USDT", "TRADING", 2_500.0),
                   ("SOL", "USDT", "TRADING", 100.0), ("ETH", "BTC", "TRADING", 0.06),
                   ("LUNA", "USDT", "BREAK", 1.0))

#: default listing time of every symbol: 2017-01-01T00:00:00Z (no candles before)
DEFAULT_LISTED_MS = 1_483_228_800_000


def error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Response:
    """A Binance error body ``{"code": -1121, "msg": "Invalid symbol."}``."""
    return status, {"code": code, "msg": msg}, headers or {}


# -- faults ----------------------------------------------------------------------------------------
def rate_limit(retry_after: int = 1, status: int = 429) -> Fault:
    """429 (or 418, an IP ban) with ``Retry-After`` seconds, as Binance answers an over-limit."""
    return lambda _req, _h: error(status, -1003, "Too many requests; current limit is 6000 request weight "
                                  "per 1 MINUTE.", {"Retry-After": str(retry_after)})


def short_page(rows: int) -> Fault:
    """Serve only the first ``rows`` rows of a klines page (as if the exchange truncated it)."""
    def fault(req: Request, handler: Handler) -> Response:
        status, body, headers = handler(req)
        return status, body[:rows] if isinstance(body, list) else body, headers
    return fault


def duplicated(rows: int) -> Fault:
    """Send the first ``rows`` rows of a klines page twice, the copies out of order at the end."""
    def fault(req: Request, handler: Handler) -> Response:
        status, body, headers = handler(req)
        if isinstance(body, list):
            body = body + body[:rows][::-1]
        return status, body, headers
    return fault


@dataclass
class BinanceServer(LoopbackExchange):
    """The loopback Binance; start it with ``with BinanceServer() as server:`` or start()/stop()."""

    exchange_id: ClassVar[str] = "binance"

    seed: int = 7
    markets: tuple[tuple[str, str, str, float], ...] = DEFAULT_MARKETS
    listed_ms: int = DEFAULT_LISTED_MS
    #: (start_ms, end_ms) ranges of open times with no candles (never served)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    #: every symbol's ``orderTypes`` (real BTCUSDT lists STOP_LOSS and TAKE_PROFIT too; this default
    #: offers only the stop-limit, as freqtrade assumes for Binance spot)
    order_types: tuple[str, ...] = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")

    def __post_init__(self) -> None:
        super().__post_init__()
        for path, handler in (("/api/v3/exchangeInfo", self._exchange_info), ("/api/v3/klines", self._klines),
                              ("/api/v3/ticker/24hr", self._ticker_24hr), ("/api/v3/time", self._time),
                              ("/api/v3/ping", lambda _r: (200, {}, {}))):
            self.route("GET", path, handler)

    def limit_answer(self, status: int, retry_after: float) -> Response:
        """Binance's answers: 429 ``-1003`` "Too many requests", 418 ``-1003`` "IP banned until …"."""
        message = ("Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute." if status == 429
                   else f"Way too many requests; IP(127.0.0.1) banned until {self.now() + int(retry_after * 1000)}.")
        return error(status, -1003, message, {"Retry-After": str(max(1, int(retry_after)))})

    # -- market data -----------------------------------------------------------------------------
    def _market(self, symbol_id: str | None) -> tuple[str, str, str, float] | None:
        return next((m for m in self.markets if m[0] + m[1] == symbol_id), None)

    def _exchange_info(self, _request: Request) -> Response:
        symbols = []
        for base, quote, status, _price in self.markets:
            symbols.append({
                "symbol": base + quote, "status": status, "baseAsset": base, "baseAssetPrecision": 8,
                "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": list(self.order_types),
                "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
                "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                     "tickSize": "0.01000000"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                     "stepSize": "0.00001000"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000",
                     "stepSize": "0.00000000"},
                ],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })
        return 200, {"timezone": "UTC", "serverTime": self.now(),
                     "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                     "limit": 6000},
                                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100}],
                     "exchangeFilters": [], "symbols": symbols}, {}

    def _time(self, _request: Request) -> Response:
        return 200, {"serverTime": self.now()}, {}

    def candles(self, symbol_id: str, interval: str, open_times: np.ndarray) -> np.ndarray:
        """Rows ``[time, open, high, low, close, volume]`` (float64) for the given open times."""
        market = self._market(symbol_id)
        base_price = market[3] if market else 1.0
        step = INTERVAL_MS[interval]
        salt = int.from_bytes(hashlib.sha256(f"{self.seed}:{symbol_id}".encode()).digest()[:4], "little")
        t = open_times.astype(np.float64)

        def level(ms: np.ndarray) -> np.ndarray:
            days = ms / 86_400_000.0
            return base_price * (1 + 0.15 * np.sin(2 * math.pi * days / 23.0 + salt % 7)
                                 + 0.04 * np.sin(2 * math.pi * days / 1.7) + 0.01 * np.sin(2 * math.pi * days * 9.0))

        open_, close = level(t), level(t + step)
        u1, u2, u3 = (_noise(t, salt + k) for k in (1, 2, 3))
        high = np.maximum(open_, close) * (1 + 0.002 * u1)
        low = np.minimum(open_, close) * (1 - 0.002 * u2)
        volume = 1 + 100 * u3
        return np.column_stack([t, open_, high, low, close, volume])

    def expected_klines(self, symbol_id: str, interval: str, start_ms: int, end_ms: int) -> np.ndarray:
        """The rows this server has for open times in ``[start_ms, end_ms)`` (listing and gaps applied,
        unclosed candles included)."""
        step = INTERVAL_MS[interval]
        first = max(start_ms, self.listed_ms)
        first = -(-first // step) * step
        last = min(end_ms, self.now() + 1)
        times = np.arange(first, last, step, dtype=np.int64) if last > first else np.zeros(0, np.int64)
        for gap_start, gap_end in self.gaps:
            times = times[(times < gap_start) | (times >= gap_end)]
        return self.candles(symbol_id, interval, times)

    def _klines(self, request: Request) -> Response:
        symbol_id, interval = request.query.get("symbol"), request.query.get("interval")
        if self._market(symbol_id) is None:
            return error(400, -1121, "Invalid symbol.")
        if interval not in INTERVAL_MS:
            return error(400, -1120, "Invalid interval.")
        limit = int(request.query.get("limit", 500))
        if not 1 <= limit <= 1000:
            return error(400, -1130, "Invalid data sent for a parameter: limit")
        step = INTERVAL_MS[interval]
        end = int(request.query["endTime"]) + 1 if "endTime" in request.query else self.now() + 1
        if "startTime" in request.query:
            start = int(request.query["startTime"])
            rows = self._first_rows(symbol_id, interval, start, end, limit)
        else:  # the most recent ``limit`` candles
            rows = self.expected_klines(symbol_id, interval, end - limit * step, end)
        close_offset = step - 1
        return 200, [[int(r[0]), f"{r[1]:.8f}", f"{r[2]:.8f}", f"{r[3]:.8f}", f"{r[4]:.8f}", f"{r[5]:.8f}",
                      int(r[0]) + close_offset, f"{r[4] * r[5]:.8f}", 100, f"{r[5] / 2:.8f}",
                      f"{r[4] * r[5] / 2:.8f}", "0"] for r in rows], {}

    def _first_rows(self, symbol_id: str, interval: str, start: int, end: int, limit: int) -> np.ndarray:
        # widen the window until ``limit`` rows are found (gaps and the listing date skip time)
        step, span = INTERVAL_MS[interval], limit
        while True:
            rows = self.expected_klines(symbol_id, interval, start, min(end, start + span * step))
            if len(rows) >= limit or start + span * step >= end:
                return rows[:limit]
            span *= 4

    def _ticker_24hr(self, request: Request) -> Response:
        symbol_id = request.query.get("symbol")
        if self._market(symbol_id) is None:
            return error(400, -1121, "Invalid symbol.")
        now = self.now()
        day_ago = now - 86_400_000
        first, last = self.candles(symbol_id, "1m", np.array([day_ago // 60_000 * 60_000,
                                                              now // 60_000 * 60_000]))
        open_, price = first[1], last[4]
        change = price - open_
        return 200, {
            "symbol": symbol_id, "priceChange": f"{change:.8f}", "priceChangePercent": f"{change / open_ * 100:.3f}",
            "weightedAvgPrice": f"{(open_ + price) / 2:.8f}", "prevClosePrice": f"{open_:.8f}",
            "lastPrice": f"{price:.8f}", "lastQty": "0.01000000", "bidPrice": f"{price * 0.9999:.8f}",
            "bidQty": "1.50000000", "askPrice": f"{price * 1.0001:.8f}", "askQty": "2.00000000",
            "openPrice": f"{open_:.8f}", "highPrice": f"{max(open_, price) * 1.01:.8f}",
            "lowPrice": f"{min(open_, price) * 0.99:.8f}", "volume": "15234.56000000",
            "quoteVolume": f"{15234.56 * price:.8f}", "openTime": day_ago, "closeTime": now,
            "firstId": 1, "lastId": 1000, "count": 1000,
        }, {}


def _noise(t: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) noise per timestamp (a cheap integer hash, vectorised)."""
    x = (t.astype(np.int64) // 1000 + salt * 0x9E3779B1) & 0xFFFFFFFF
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    x = (x >> 16) ^ x
    return (x & 0xFFFFFF) / float(1 << 24)
