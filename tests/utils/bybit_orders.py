"""Bybit spot order endpoints (API v5, unified trading account) for the loopback Bybit
(:mod:`tests.utils.bybit_server`).

Install with ``orders = BybitOrders.install(server)``. Served, in Bybit's wire format, every
request signed (:func:`tests.utils.bybit_server.verify_signature`):

* ``POST /v5/order/create`` — JSON ``{"category": "spot", "symbol", "side": "Buy"|"Sell",
  "orderType": "Market", "qty", "marketUnit", "orderLinkId"}``. As on Bybit, a market buy's
  ``qty`` is in the quote coin unless ``marketUnit`` is ``baseCoin``. The answer acknowledges
  only (``result: {"orderId", "orderLinkId"}``); refusals are ``retCode`` with HTTP 200:
  170131 insufficient balance, 170121 invalid symbol, 170141 duplicate ``orderLinkId``. Faults:
  ``rate_limited`` → retCode 10006 "Too many visits!" (HTTP 200, as Bybit answers a per-UID limit);
  ``ip_banned`` → HTTP 403 "access too frequent" (Bybit's IP ban, at least 10 minutes).
* ``GET /v5/order/realtime?category=spot&orderLinkId=`` — open orders and recent closed ones
  (``openOnly`` is ignored for an id), and ``GET /v5/order/history`` (closed orders); both answer
  ``result.list`` (empty when the id is unknown). ``orderStatus`` ``Filled``, or
  ``PartiallyFilledCanceled`` after a partial fill; ``cumExecQty``, ``avgPrice``,
  ``cumFeeDetail`` (``{coin: fee}``).
* ``GET /v5/account/wallet-balance?accountType=UNIFIED`` — ``walletBalance`` and ``locked`` per coin.
* ``GET /v5/user/query-api`` and ``GET /v5/account/info`` — the key's account mode (unified: ccxt
  asks before orders and balances).
* Spot TP/SL orders: ``POST /v5/order/create`` with ``orderFilter: tpslOrder``, ``triggerPrice``,
  ``triggerDirection: 2``, ``orderType: Market`` (a stop-loss sell; its coins are reserved while it
  waits); the order lists show it only with ``orderFilter=tpslOrder`` (``orderStatus``
  ``Untriggered`` → ``Filled`` under the same ids once triggered; ``Deactivated`` once cancelled);
  ``POST /v5/order/cancel`` — ``{"category", "symbol", "orderLinkId", "orderFilter"}`` (not open →
  retCode 170213 "Order does not exist.").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.utils.bybit_server import answer, verify_signature
from tests.utils.loopback_exchange import Request, Response
from tests.utils.order_book import BookOrder, OrderBook

STATUS = {"filled": "Filled", "expired": "PartiallyFilledCanceled", "open": "New", "canceled": "Cancelled"}
#: a TP/SL order's ``orderStatus`` where it differs
STOP_STATUS = {"open": "Untriggered", "canceled": "Deactivated"}


@dataclass
class BybitOrders(OrderBook):
    """Bybit's order and account endpoints over an :class:`OrderBook`."""

    _hidden: set[str] = field(default_factory=set)  # client ids a ``lookup_miss`` hides from one lookup

    def serve(self) -> None:
        for method, path, handler in (
                ("POST", "/v5/order/create", self._create), ("GET", "/v5/order/realtime", self._realtime),
                ("GET", "/v5/order/history", self._history), ("GET", "/v5/account/wallet-balance", self._wallet),
                ("GET", "/v5/user/query-api", self._api_key), ("GET", "/v5/account/info", self._account_info),
                ("POST", "/v5/order/cancel", self._cancel)):
            self.server.route(method, path, self.signed(handler))

    def refuse_unsigned(self, request: Request) -> Response | None:
        return verify_signature(request, self.api_key, self.secret, self.server.now())

    def _create(self, request: Request) -> Response:
        body, now = request.json(), self.server.now()
        if body.get("category") != "spot" or body.get("orderType") != "Market":
            return answer({}, now, 10001, "params error: category or orderType")
        fault = self.placement_fault()
        if fault == "server_error":
            return 503, "Service Unavailable", {"Content-Type": "text/plain"}
        if fault == "rate_limited":
            return answer({}, now, 10006, "Too many visits!")
        if fault == "ip_banned":
            return 403, "access too frequent", {"Content-Type": "text/plain"}
        if fault == "delisted":
            return answer({}, now, 170121, "Invalid symbol.")
        if fault == "insufficient_balance":
            return answer({}, now, 170131, "Insufficient balance.")
        symbol = body["symbol"][:-4] + "/" + body["symbol"][-4:]
        if body.get("orderFilter") == "tpslOrder":
            return self._create_stop(body, symbol, now)
        side, quantity = body["side"].lower(), float(body["qty"])
        if side == "buy" and body.get("marketUnit") != "baseCoin":
            quantity /= self.prices[symbol]  # Bybit's default for a market buy: qty is what to spend
        placed = self.place(body.get("orderLinkId", ""), symbol, side, quantity, partial=fault == "partial_fill")
        if placed == "duplicate":
            return answer({}, now, 170141, "Duplicate clientOrderId")
        if placed == "insufficient_balance":
            return answer({}, now, 170131, "Insufficient balance.")
        assert isinstance(placed, BookOrder)
        self.after_accepting(fault)
        return answer({"orderId": placed.order_id, "orderLinkId": placed.client_id}, now)

    def _create_stop(self, body: dict[str, Any], symbol: str, now: int) -> Response:
        if body.get("side") != "Sell" or "triggerPrice" not in body or str(body.get("triggerDirection")) != "2" \
                or body.get("marketUnit", "baseCoin") != "baseCoin":
            return answer({}, now, 10001, "params error: side, triggerPrice, triggerDirection or marketUnit")
        placed = self.place_stop(body.get("orderLinkId", ""), symbol, float(body["qty"]), float(body["triggerPrice"]))
        if placed == "duplicate":
            return answer({}, now, 170141, "Duplicate clientOrderId")
        if placed == "insufficient_balance":
            return answer({}, now, 170131, "Insufficient balance.")
        assert isinstance(placed, BookOrder)
        return answer({"orderId": placed.order_id, "orderLinkId": placed.client_id}, now)

    def _cancel(self, request: Request) -> Response:
        body, now = request.json(), self.server.now()
        order = self.find(body.get("orderLinkId"), body.get("orderId"))
        wanted = "stop" if body.get("orderFilter") in ("tpslOrder", "StopOrder") else "market"
        canceled = self.cancel(order.client_id) if order is not None and order.kind == wanted else None
        if canceled is None:
            return answer({}, now, 170213, "Order does not exist.")
        return answer({"orderId": canceled.order_id, "orderLinkId": canceled.client_id}, now)

    def _realtime(self, request: Request) -> Response:
        client_id = request.query.get("orderLinkId")
        if client_id and self.lookup_misses():
            self._hidden.add(client_id)  # not visible yet: in neither list
            return self._listing(None)
        return self._listing(self._matching(request))

    def _history(self, request: Request) -> Response:
        client_id = request.query.get("orderLinkId")
        if client_id in self._hidden:
            self._hidden.discard(client_id)
            return self._listing(None)
        return self._listing(self._matching(request))

    def _matching(self, request: Request) -> BookOrder | None:
        order = self.find(request.query.get("orderLinkId"), request.query.get("orderId"))
        symbol = request.query.get("symbol")
        wanted = "stop" if request.query.get("orderFilter") in ("tpslOrder", "StopOrder") else "market"
        return order if order is not None and order.kind == wanted and (
            symbol is None or symbol == order.base + order.quote) else None

    def _listing(self, order: BookOrder | None) -> Response:
        return answer({"category": "spot", "nextPageCursor": "", "list": [_order(order)] if order else []},
                      self.server.now())

    def _wallet(self, request: Request) -> Response:
        if request.query.get("accountType") != "UNIFIED":
            return answer({}, self.server.now(), 10001, "accountType only support UNIFIED.")
        coins = [{"availableToBorrow": "", "bonus": "0", "accruedInterest": "0", "availableToWithdraw": "",
                  "totalOrderIM": "0", "equity": f"{v:.8f}", "totalPositionMM": "0", "usdValue": "",
                  "spotHedgingQty": "0", "unrealisedPnl": "0", "collateralSwitch": True, "borrowAmount": "0",
                  "totalPositionIM": "0", "walletBalance": f"{v + self.locked_of(asset):.8f}", "cumRealisedPnl": "0",
                  "locked": f"{self.locked_of(asset):.8f}", "marginCollateral": True, "coin": asset}
                 for asset, v in self.balance_rows()]
        return answer({"list": [{"totalEquity": "", "accountIMRate": "0", "totalMarginBalance": "",
                                 "totalInitialMargin": "0", "accountType": "UNIFIED", "totalAvailableBalance": "",
                                 "accountMMRate": "0", "totalPerpUPL": "0", "totalWalletBalance": "",
                                 "accountLTV": "0", "totalMaintenanceMargin": "0", "coin": coins}]}, self.server.now())

    def _api_key(self, _request: Request) -> Response:
        return answer({"id": "13770661", "note": "capandex", "apiKey": self.api_key, "readOnly": 0, "secret": "",
                       "permissions": {"ContractTrade": [], "Spot": ["SpotTrade"], "Wallet": [], "Options": [],
                                       "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [],
                                       "NFT": [], "Affiliate": []},
                       "ips": ["*"], "type": 1, "deadlineDay": 83, "expiredAt": "", "createdAt": "2024-10-16T02:24:40Z",
                       "unified": 0, "uta": 1, "userID": 24600000, "inviterID": 0, "vipLevel": "No VIP",
                       "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True,
                       "parentUid": "0", "kycLevel": "LEVEL_DEFAULT", "kycRegion": ""}, self.server.now())

    def _account_info(self, _request: Request) -> Response:
        return answer({"unifiedMarginStatus": 6, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
                       "spotHedgingStatus": "OFF", "updatedTime": str(self.server.now()), "dcpStatus": "OFF",
                       "timeWindow": 0, "smpGroup": 0}, self.server.now())


def _order(order: BookOrder) -> dict[str, Any]:
    """An order as Bybit's order lists report it (unified account, spot)."""
    time_ms = str(order.time_ms)
    return {
        "orderId": order.order_id, "orderLinkId": order.client_id, "blockTradeId": "",
        "symbol": order.base + order.quote, "price": "0", "qty": f"{order.requested:.8f}",
        "side": order.side.capitalize(), "isLeverage": "0", "positionIdx": 0,
        "orderStatus": (STOP_STATUS.get(order.status) if order.kind == "stop" else None) or STATUS[order.status],
        "cancelType": "UNKNOWN", "rejectReason": "EC_NoError", "avgPrice": f"{order.price:.8f}",
        "leavesQty": "0", "leavesValue": "0", "cumExecQty": f"{order.filled:.8f}",
        "cumExecValue": f"{order.cost:.8f}", "cumExecFee": f"{order.fee:.8f}", "timeInForce": "IOC",
        "orderType": "Market", "stopOrderType": "tpslOrder" if order.kind == "stop" else "", "orderIv": "",
        "marketUnit": "baseCoin", "triggerPrice": f"{order.trigger:.8f}" if order.trigger is not None else "0",
        "takeProfit": "0", "stopLoss": "0", "tpslMode": "", "ocoTriggerBy": "", "tpLimitPrice": "",
        "slLimitPrice": "", "tpTriggerBy": "", "slTriggerBy": "", "triggerDirection": 2 if order.kind == "stop" else 0,
        "triggerBy": "LastPrice" if order.kind == "stop" else "",
        "lastPriceOnCreated": "", "basePrice": f"{order.price:.8f}", "reduceOnly": False, "closeOnTrigger": False,
        "placeType": "", "smpType": "None", "smpGroup": 0, "smpOrderId": "", "createdTime": time_ms,
        "updatedTime": time_ms, "cumFeeDetail": {order.fee_asset: f"{order.fee:.8f}"}, "extraFees": "",
    }
