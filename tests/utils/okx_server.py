"""A loopback OKX (API v5): the spot instruments ccxt's ``okx`` class loads markets from, and
OKX's request signing, checked as OKX checks it. Order and account endpoints: :mod:`tests.utils.okx_orders`.

Served: ``GET /api/v5/public/instruments?instType=SPOT`` (``{"code": "0", "msg": "", "data": [...]}``,
one instrument per market: ``instId`` ``BTC-USDT``, ``lotSz``/``minSz`` in base units, ``tickSz``,
``state`` ``live`` or ``suspend``), and ``GET /api/v5/market/candles`` / ``history-candles`` as OKX
answers them: ``instId``, ``bar`` (``1m``, ``1H``, ``1Dutc``…), ``after`` (candles older than it) and
``before`` (newer than it), both exclusive, ``limit`` (default 100, at most 300): the **newest**
``limit`` candles of that span, newest first, ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``
as strings — so an ``after`` far past ``before`` answers the end of the span, not its start.
:meth:`OkxServer.expected_candles` is what the server holds for a range.

:func:`verify_signature` (OKX v5 "REST authentication"): headers ``OK-ACCESS-KEY``,
``OK-ACCESS-PASSPHRASE``, ``OK-ACCESS-TIMESTAMP`` (ISO 8601 UTC with milliseconds, at most 30 s
off the server clock) and ``OK-ACCESS-SIGN`` = Base64(HMAC-SHA256(secret, timestamp + method +
requestPath (with its query string) + body)). Failures answer HTTP 401 with OKX's codes: 50103/
50104 (a header missing), 50111 (unknown key), 50105 (wrong passphrase), 50102 (timestamp
expired), 50113 (invalid signature).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tests.utils.loopback_exchange import LoopbackExchange, Request, Response

#: (base, quote, state, price) of the default instruments; a suspended one is inactive
DEFAULT_MARKETS = (("BTC", "USDT", "live", 40_000.0), ("ETH", "USDT", "live", 2_500.0),
                   ("LUNA", "USDT", "suspend", 1.0))

TIMESTAMP_WINDOW_MS = 30_000


def _bar_ms(bar: str) -> int:
    """``1m`` / ``4H`` / ``1Dutc`` → milliseconds."""
    bar = bar.removesuffix("utc")
    return int(bar[:-1]) * {"m": 60_000, "H": 3_600_000, "D": 86_400_000, "W": 604_800_000}[bar[-1]]


def error(status: int, code: str, msg: str) -> Response:
    """An OKX error body ``{"code": "50113", "msg": "Invalid Sign", "data": []}``."""
    return status, {"code": code, "msg": msg, "data": []}, {}


def ok(data: list[dict[str, object]]) -> Response:
    return 200, {"code": "0", "msg": "", "data": data}, {}


def verify_signature(request: Request, api_key: str, secret: str, passphrase: str, now_ms: int) -> Response | None:
    """``None`` when ``request`` is signed as OKX requires for ``api_key``, else OKX's error answer."""
    headers = request.headers
    if not headers.get("ok-access-key"):
        return error(401, "50103", 'Request header "OK-ACCESS-KEY" cannot be empty.')
    if not headers.get("ok-access-passphrase"):
        return error(401, "50104", 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.')
    if headers["ok-access-key"] != api_key:
        return error(401, "50111", "Invalid OK-ACCESS-KEY.")
    if not hmac.compare_digest(headers["ok-access-passphrase"], passphrase):
        return error(401, "50105", "Your OK-ACCESS-PASSPHRASE is incorrect.")
    stamp = headers.get("ok-access-timestamp", "")
    try:
        sent_ms = int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return error(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.")
    if abs(now_ms - sent_ms) > TIMESTAMP_WINDOW_MS:
        return error(401, "50102", "Timestamp request expired.")
    path = request.path + (f"?{request.raw_query}" if request.raw_query else "")
    payload = stamp + request.method + path + request.body.decode()
    expected = base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(headers.get("ok-access-sign", ""), expected):
        return error(401, "50113", "Invalid Sign.")
    return None


@dataclass
class OkxServer(LoopbackExchange):
    """The loopback OKX; start it with ``with OkxServer() as server:``."""

    exchange_id: ClassVar[str] = "okx"

    markets: tuple[tuple[str, str, str, float], ...] = DEFAULT_MARKETS

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("GET", "/api/v5/public/instruments", self._instruments)
        self.route("GET", "/api/v5/market/candles", self._candles)
        self.route("GET", "/api/v5/market/history-candles", self._candles)

    def expected_candles(self, bar_ms: int, start_ms: int, end_ms: int) -> np.ndarray:
        """Rows ``[time, open, high, low, close, volume]`` the server holds for open times in
        ``[start_ms, end_ms)`` (up to the candle open now): a deterministic wave, the same for every
        instrument."""
        first = -(-start_ms // bar_ms) * bar_ms
        times = np.arange(first, min(end_ms, self.now() + 1), bar_ms, dtype=np.int64).astype(np.float64)
        def wave(ms: np.ndarray) -> np.ndarray:
            return 40_000 * (1 + 0.1 * np.sin(ms / 3.7e8) + 0.01 * np.sin(ms / 1.1e6))

        open_, close = wave(times), wave(times + bar_ms)  # each candle opens where the one before closed
        return np.column_stack([times, open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999,
                                close, 1 + (times / bar_ms) % 7])

    def _candles(self, request: Request) -> Response:
        query = request.query
        bar_ms = _bar_ms(query.get("bar", "1m"))
        limit = min(int(query.get("limit") or 100), 300)
        after = int(query["after"]) if query.get("after") else self.now() + bar_ms  # older than
        before = int(query["before"]) if query.get("before") else -1  # newer than
        rows = self.expected_candles(bar_ms, before + 1, after)[-limit:][::-1]
        return ok([[str(int(r[0])), *(f"{v:.8f}" for v in r[1:5]), f"{r[5]:.4f}", "0", "0",
                    "1" if r[0] + bar_ms <= self.now() else "0"] for r in rows])

    def _instruments(self, request: Request) -> Response:
        if request.query.get("instType") != "SPOT":
            return ok([])
        return ok([{
            "alias": "", "auctionEndTime": "", "baseCcy": base, "category": "1", "ctMult": "", "ctType": "",
            "ctVal": "", "ctValCcy": "", "expTime": "", "instFamily": "", "instId": f"{base}-{quote}",
            "instType": "SPOT", "lever": "10", "listTime": "1606468572000", "lotSz": "0.00001",
            "maxIcebergSz": "9999999999", "maxLmtAmt": "1000000", "maxLmtSz": "9999999999", "maxMktAmt": "1000000",
            "maxMktSz": "1000000", "maxStopSz": "1000000", "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999",
            "minSz": "0.00001", "optType": "", "quoteCcy": quote, "ruleType": "normal", "settleCcy": "", "state": state,
            "stk": "", "tickSz": "0.1", "uly": "",
        } for base, quote, state, _price in self.markets])
