"""OKX spot order endpoints (API v5) for the loopback OKX (:mod:`tests.utils.okx_server`).

Install with ``orders = OkxOrders.install(server)``. Served, in OKX's wire format, every request
signed (:func:`tests.utils.okx_server.verify_signature`):

* ``POST /api/v5/trade/order`` — JSON ``{"instId", "tdMode": "cash", "side", "ordType": "market",
  "sz", "tgtCcy", "clOrdId"}``. As on OKX, a market buy's ``sz`` is in the quote currency unless
  ``tgtCcy`` is ``base_ccy``. The answer acknowledges only: ``{"code": "0", "data": [{"clOrdId",
  "ordId", "sCode": "0", "sMsg": "Order placed", …}]}``; a refusal is ``{"code": "1", "msg": "All
  operations failed", "data": [{"sCode", "sMsg", …}]}`` with HTTP 200: 51008 insufficient
  balance, 51001 unknown instrument, 51016 duplicated ``clOrdId``. Faults ``rate_limited`` and
  ``ip_banned`` answer HTTP 429 ``{"code": "50011", "msg": "Too Many Requests"}`` (OKX has no
  separate ban answer: its rate limits are per endpoint and user id).
* ``GET /api/v5/trade/order?instId=&clOrdId=`` (or ``ordId``) — the order (``state`` ``filled`` or
  ``canceled`` after a partial fill; ``accFillSz``, ``avgPx``, ``fee`` negative in ``feeCcy``);
  unknown → ``{"code": "51603", "msg": "Order does not exist"}``.
* ``GET /api/v5/account/balance`` — the trading account's ``details`` (``availBal``, ``cashBal``,
  ``frozenBal``, ``eq`` per currency).
* Algo orders (OKX v5 "Algo trading"): ``POST /api/v5/trade/order-algo`` — ``{"instId", "side":
  "sell", "ordType": "conditional", "sz", "tdMode": "cash", "slTriggerPx", "slOrdPx": "-1",
  "algoClOrdId"}`` (a stop-loss sell at market), answered with ``{"algoId", "algoClOrdId", "sCode":
  "0"}``. The account is in OKX's Spot mode (margin free), as a new account is: a ``tdMode`` other
  than ``cash`` (``cross``: a margin order) is refused with sCode 51010 ("You can't complete this
  request under your current account mode"), for algo orders as for market orders;
  ``GET /api/v5/trade/order-algo?algoClOrdId=`` (``state`` ``live`` → ``effective`` once triggered,
  its ``ordId`` the market order that filled it, whose fill and fee ``GET /api/v5/trade/order``
  reports; ``canceled``; unknown → 51603); ``POST /api/v5/trade/cancel-algos`` — ``[{"instId",
  "algoClOrdId"}]`` (not live → ``sCode`` 51400). A resting algo order reserves nothing until it
  triggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.utils.loopback_exchange import Request, Response
from tests.utils.okx_server import ok, verify_signature
from tests.utils.order_book import BookOrder, OrderBook

STATE = {"filled": "filled", "expired": "canceled", "open": "live", "canceled": "canceled"}
#: an algo order's ``state``
ALGO_STATE = {"open": "live", "filled": "effective", "expired": "effective", "canceled": "canceled"}


#: placement faults OKX answers before looking at the order: a bare 503, its rate limit (HTTP 429)
_REFUSALS: dict[str, Response] = {
    "server_error": (503, "Service Unavailable", {"Content-Type": "text/plain"}),
    "rate_limited": (429, {"code": "50011", "msg": "Too Many Requests", "data": []}, {}),
    "ip_banned": (429, {"code": "50011", "msg": "Too Many Requests", "data": []}, {}),
}


def _refusal(why: str, client_id: str, asset: str, now_ms: int) -> Response:
    """OKX's answer to an order the book refused (``why``: duplicate or insufficient_balance)."""
    if why == "duplicate":
        return refused(client_id, "51016", "Duplicated clOrdId", now_ms)
    return refused(client_id, "51008", f"Order failed. Insufficient {asset} balance in account.", now_ms)


def refused(client_id: str, code: str, message: str, now_ms: int) -> Response:
    """OKX's answer to a refused order: HTTP 200, ``code`` 1, the reason in ``data[0].sCode``."""
    return 200, {"code": "1", "msg": "All operations failed", "inTime": str(now_ms * 1000),
                 "outTime": str(now_ms * 1000 + 300),
                 "data": [{"clOrdId": client_id, "ordId": "", "tag": "", "ts": str(now_ms), "sCode": code,
                           "sMsg": message}]}, {}


@dataclass
class OkxOrders(OrderBook):
    """OKX's order and account endpoints over an :class:`OrderBook`."""

    lock_stops: bool = False
    stop_child_orders: bool = True

    def serve(self) -> None:
        self.server.route("POST", "/api/v5/trade/order", self.signed(self._create))
        self.server.route("GET", "/api/v5/trade/order", self.signed(self._query))
        self.server.route("GET", "/api/v5/account/balance", self.signed(self._balance))
        self.server.route("POST", "/api/v5/trade/order-algo", self.signed(self._create_algo))
        self.server.route("GET", "/api/v5/trade/order-algo", self.signed(self._query_algo))
        self.server.route("POST", "/api/v5/trade/cancel-algos", self.signed(self._cancel_algos))

    def refuse_unsigned(self, request: Request) -> Response | None:
        return verify_signature(request, self.api_key, self.secret, self.passphrase, self.server.now())

    def _create(self, request: Request) -> Response:
        body, now = request.json(), self.server.now()
        client_id = body.get("clOrdId", "")
        if body.get("tdMode") != "cash" or body.get("ordType") != "market" or not client_id.isalnum():
            return refused(client_id, "51000", "Parameter tdMode, ordType or clOrdId error", now)
        fault = self.placement_fault()
        if fault in _REFUSALS:
            return _REFUSALS[fault]
        if fault == "delisted":
            return refused(client_id, "51001", "Instrument ID or Spread ID doesn't exist.", now)
        base, quote = body["instId"].split("-")
        if fault == "insufficient_balance":
            return refused(client_id, "51008", f"Order failed. Insufficient {quote} balance in account.", now)
        symbol, size = f"{base}/{quote}", float(body["sz"])
        if body["side"] == "buy" and body.get("tgtCcy") != "base_ccy":
            size /= self.prices[symbol]  # OKX's default for a market buy: sz is what to spend
        placed = self.place(client_id, symbol, body["side"], size, partial=fault == "partial_fill")
        if not isinstance(placed, BookOrder):
            return _refusal(placed, client_id, quote, now)
        self.after_accepting(fault)
        return 200, {"code": "0", "msg": "", "inTime": str(now * 1000), "outTime": str(now * 1000 + 300),
                     "data": [{"clOrdId": client_id, "ordId": placed.order_id, "tag": "", "ts": str(now),
                               "sCode": "0", "sMsg": "Order placed"}]}, {}

    def _query(self, request: Request) -> Response:
        order = None if self.lookup_misses() else self.find(request.query.get("clOrdId"), request.query.get("ordId"))
        if order is None or order.base + "-" + order.quote != request.query.get("instId"):
            return 200, {"code": "51603", "msg": "Order does not exist", "data": []}, {}
        return ok([_order(order)])

    def _create_algo(self, request: Request) -> Response:
        body, now = request.json(), self.server.now()
        client_id = body.get("algoClOrdId", "")
        if body.get("ordType") != "conditional" or body.get("side") != "sell" or not client_id.isalnum() or \
                "slTriggerPx" not in body or body.get("slOrdPx") != "-1":
            return refused(client_id, "51000", "Parameter ordType, side, algoClOrdId or slTriggerPx error", now)
        if body.get("tdMode") != "cash":
            return refused(client_id, "51010", "You can't complete this request under your current account mode.",
                           now)
        fault = self.placement_fault()
        if fault in _REFUSALS:
            return _REFUSALS[fault]
        base, quote = body["instId"].split("-")
        placed = self.place_stop(client_id, f"{base}/{quote}", float(body["sz"]), float(body["slTriggerPx"]))
        if not isinstance(placed, BookOrder):
            return _refusal(placed, client_id, base, now)
        self.after_accepting(fault)
        return ok([{"algoId": placed.order_id, "clOrdId": "", "algoClOrdId": client_id, "sCode": "0", "sMsg": "",
                    "tag": ""}])

    def _query_algo(self, request: Request) -> Response:
        order = None if self.lookup_misses() else self.find(request.query.get("algoClOrdId"),
                                                            request.query.get("algoId"))
        if order is None or order.kind != "stop" or order.base + "-" + order.quote != request.query.get("instId"):
            return 200, {"code": "51603", "msg": "Order does not exist", "data": []}, {}
        return ok([_algo(order)])

    def _cancel_algos(self, request: Request) -> Response:
        answers, failed = [], False
        for item in request.json():
            order = self.find(item.get("algoClOrdId"), item.get("algoId"))
            canceled = self.cancel(order.client_id) if order is not None and order.kind == "stop" else None
            failed = failed or canceled is None
            answers.append({"algoId": canceled.order_id if canceled else "", "algoClOrdId": item.get("algoClOrdId", ""),
                            "sCode": "0" if canceled else "51400",
                            "sMsg": "" if canceled else "Cancellation failed as the order does not exist."})
        if failed:
            return 200, {"code": "1", "msg": "All operations failed", "data": answers}, {}
        return ok(answers)

    def _balance(self, _request: Request) -> Response:
        now = str(self.server.now())
        details = [{"accAvgPx": "", "availBal": f"{v:.8f}", "availEq": "", "cashBal": f"{v:.8f}", "ccy": asset,
                    "crossLiab": "", "disEq": "0", "eq": f"{v:.8f}", "eqUsd": "", "fixedBal": "0", "frozenBal": "0",
                    "interest": "", "isoEq": "", "liab": "", "maxLoan": "", "notionalLever": "", "ordFrozen": "0",
                    "spotBal": f"{v:.8f}", "spotInUseAmt": "", "stgyEq": "0", "twap": "0", "uTime": now, "upl": "",
                    } for asset, v in self.balance_rows()]
        return ok([{"adjEq": "", "borrowFroz": "", "details": details, "imr": "", "isoEq": "0", "mgnRatio": "",
                    "mmr": "", "notionalUsd": "", "ordFroz": "", "totalEq": "", "uTime": now, "upl": ""}])


def _order(order: BookOrder) -> dict[str, Any]:
    """An order as ``GET /api/v5/trade/order`` reports it (OKX quotes fees as negative numbers)."""
    time_ms = str(order.time_ms)
    return {
        "accFillSz": f"{order.filled:.8f}", "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
        "attachAlgoOrds": [], "avgPx": f"{order.price:.8f}", "cTime": time_ms, "cancelSource": "",
        "cancelSourceReason": "", "category": "normal", "ccy": "", "clOrdId": order.client_id,
        "fee": f"{-order.fee:.8f}", "feeCcy": order.fee_asset, "fillPx": f"{order.price:.8f}",
        "fillSz": f"{order.filled:.8f}", "fillTime": time_ms, "instId": f"{order.base}-{order.quote}",
        "instType": "SPOT", "isTpLimit": "false", "lever": "", "linkedAlgoOrd": {"algoId": ""},
        "ordId": order.order_id, "ordType": "market", "pnl": "0", "posSide": "net", "px": "", "pxType": "",
        "pxUsd": "", "pxVol": "", "quickMgnType": "", "rebate": "0", "rebateCcy": order.quote, "reduceOnly": "false",
        "side": order.side, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "",
        "state": STATE[order.status], "stpId": "", "stpMode": "cancel_maker", "sz": f"{order.requested:.8f}",
        "tag": "", "tdMode": "cash", "tgtCcy": "base_ccy", "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
        "tradeId": str(int(order.order_id) + 1), "uTime": time_ms,
    }


def _algo(order: BookOrder) -> dict[str, Any]:
    """An algo order as ``GET /api/v5/trade/order-algo`` reports it (a conditional stop-loss sell)."""
    time_ms = str(order.time_ms)
    return {
        "activePx": "", "actualPx": f"{order.price:.8f}" if order.child_id else "",
        "actualSide": "sl" if order.child_id else "", "actualSz": f"{order.filled:.8f}" if order.child_id else "0",
        "algoClOrdId": order.client_id, "algoId": order.order_id, "amendPxOnTriggerType": "0", "attachAlgoOrds": [],
        "cTime": time_ms, "callbackRatio": "", "callbackSpread": "", "ccy": "", "clOrdId": "", "closeFraction": "",
        "failCode": "", "instId": f"{order.base}-{order.quote}", "instType": "SPOT", "last": f"{order.price:.8f}",
        "lever": "", "moveTriggerPx": "", "ordId": order.child_id or "", "ordIdList": [order.child_id] if order.child_id
        else [], "ordPx": "", "ordType": "conditional", "posSide": "net", "pxLimit": "", "pxSpread": "",
        "pxVar": "", "quickMgnType": "", "reduceOnly": "false", "side": "sell", "slOrdPx": "-1",
        "slTriggerPx": f"{order.trigger:.8f}", "slTriggerPxType": "last", "state": ALGO_STATE[order.status],
        "sz": f"{order.requested:.8f}", "szLimit": "", "tag": "", "tdMode": "cash", "tgtCcy": "", "timeInterval": "",
        "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "triggerPx": "", "triggerPxType": "",
        "triggerTime": time_ms if order.child_id else "", "uTime": time_ms,
    }
