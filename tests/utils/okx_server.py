"""A loopback OKX (API v5): the spot instruments ccxt's ``okx`` class loads markets from, and
OKX's request signing, checked as OKX checks it. Order and account endpoints: :mod:`tests.utils.okx_orders`.

Served: ``GET /api/v5/public/instruments?instType=SPOT`` (``{"code": "0", "msg": "", "data": [...]}``,
one instrument per market: ``instId`` ``BTC-USDT``, ``lotSz``/``minSz`` in base units, ``tickSz``,
``state`` ``live`` or ``suspend``).

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

from tests.utils.loopback_exchange import LoopbackExchange, Request, Response

#: (base, quote, state, price) of the default instruments; a suspended one is inactive
DEFAULT_MARKETS = (("BTC", "USDT", "live", 40_000.0), ("ETH", "USDT", "live", 2_500.0),
                   ("LUNA", "USDT", "suspend", 1.0))

TIMESTAMP_WINDOW_MS = 30_000


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
