"""A loopback Bybit (API v5): the spot instruments ccxt's ``bybit`` class loads markets from, and
Bybit's request signing, checked as Bybit checks it. Order and account endpoints: :mod:`tests.utils.bybit_orders`.

Served: ``GET /v5/market/instruments-info?category=spot`` (``{"retCode": 0, "retMsg": "OK",
"result": {"category": "spot", "list": [...]}}``: ``symbol`` ``BTCUSDT``, ``lotSizeFilter``
``basePrecision``/``minOrderQty`` in base units, ``priceFilter.tickSize``, ``status`` ``Trading``).

:func:`verify_signature` (Bybit v5 "Integration guidance → authentication"): headers
``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` (epoch ms), ``X-BAPI-RECV-WINDOW`` (default 5000) and
``X-BAPI-SIGN`` = hex HMAC-SHA256(secret, timestamp + api key + recv window + (the query string of a
GET | the JSON body of a POST)). A timestamp outside ``[server − recv window, server + 1000)`` is
retCode 10002; an unknown key 10003; a wrong signature 10004 — as ``retCode`` with HTTP 200, as Bybit
answers them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, ClassVar

from tests.utils.loopback_exchange import LoopbackExchange, Request, Response

#: (base, quote, status, price) of the default instruments
DEFAULT_MARKETS = (("BTC", "USDT", "Trading", 40_000.0), ("ETH", "USDT", "Trading", 2_500.0),
                   ("LUNA", "USDT", "Closed", 1.0))


def answer(result: Any, now_ms: int, code: int = 0, message: str = "OK") -> Response:
    """Bybit's envelope: ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``, HTTP 200."""
    return 200, {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": now_ms}, {}


def verify_signature(request: Request, api_key: str, secret: str, now_ms: int) -> Response | None:
    """``None`` when ``request`` is signed as Bybit requires for ``api_key``, else Bybit's answer."""
    headers = request.headers
    if headers.get("x-bapi-api-key") != api_key:
        return answer({}, now_ms, 10003, "API key is invalid.")
    stamp, window = headers.get("x-bapi-timestamp", ""), headers.get("x-bapi-recv-window", "5000")
    if not stamp.isdigit() or not now_ms - int(window) <= int(stamp) < now_ms + 1000:
        return answer({}, now_ms, 10002, "invalid request, please check your server timestamp or recv_window param")
    signed = request.raw_query if request.method == "GET" else request.body.decode()
    expected = hmac.new(secret.encode(), (stamp + api_key + window + signed).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("x-bapi-sign", ""), expected):
        return answer({}, now_ms, 10004, "error sign! please check your signature generation algorithm")
    return None


@dataclass
class BybitServer(LoopbackExchange):
    """The loopback Bybit; start it with ``with BybitServer() as server:``."""

    exchange_id: ClassVar[str] = "bybit"

    markets: tuple[tuple[str, str, str, float], ...] = DEFAULT_MARKETS

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("GET", "/v5/market/instruments-info", self._instruments)

    def _instruments(self, request: Request) -> Response:
        if request.query.get("category") != "spot":
            return answer({"category": request.query.get("category"), "list": [], "nextPageCursor": ""}, self.now())
        return answer({"category": "spot", "nextPageCursor": "", "list": [{
            "symbol": base + quote, "baseCoin": base, "quoteCoin": quote, "innovation": "0", "status": status,
            "marginTrading": "utaOnly", "stTag": "0",
            "lotSizeFilter": {"basePrecision": "0.00001", "quotePrecision": "0.00000001", "minOrderQty": "0.00001",
                              "maxOrderQty": "1000", "minOrderAmt": "1", "maxOrderAmt": "2000000"},
            "priceFilter": {"tickSize": "0.01"},
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        } for base, quote, status, _price in self.markets]}, self.now())
