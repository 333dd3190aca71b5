"""Binance spot order endpoints for the loopback exchange (:mod:`tests.utils.binance_server`).

Install on a server with ``orders = BinanceOrders.install(server)``. Served, in Binance's wire
format: ``POST /api/v3/order`` (MARKET orders, and the stop-loss sells ``STOP_LOSS`` — quantity,
``stopPrice`` — and ``STOP_LOSS_LIMIT`` — also ``price`` and ``timeInForce`` — when the symbol's
``orderTypes`` in ``exchangeInfo`` lists them; ``newClientOrderId`` honoured; a reused id is
refused with ``-2010 "Duplicate order sent."`` as :mod:`tests.utils.order_book` describes),
``GET /api/v3/order`` (by ``origClientOrderId`` or ``orderId``; unknown → ``-2013 "Order does not
exist."``), ``DELETE /api/v3/order`` (cancel by either id: the order ``CANCELED``; not open →
``-2011 "Unknown order sent."``), ``GET /api/v3/myTrades?orderId=`` (an order's fills with their
commission: a stop's fee is known only there) and ``GET /api/v3/account`` (balances, debited and
credited by fills; a resting stop's quantity is ``locked``). Signed requests are verified as
Binance does (:func:`tests.utils.binance_signed.verify_signature`).

Faults (:class:`~tests.utils.order_book.OrderBook`) as Binance answers them: ``server_error`` →
503 text; ``insufficient_balance`` → ``-2010 "Account has insufficient balance for requested
action."``; ``delisted`` → ``-1121 "Invalid symbol."``; ``partial_fill`` → ``EXPIRED`` after half;
``rate_limited`` → 429 ``-1003`` with ``Retry-After``; ``ip_banned`` → 418 ``-1003`` "IP banned" with
``Retry-After`` (Binance's "HTTP return codes": 418 once an IP keeps sending after 429s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.utils.binance_server import Request, Response, error
from tests.utils.binance_signed import verify_signature
from tests.utils.order_book import BookOrder, OrderBook

STATUS = {"filled": "FILLED", "expired": "EXPIRED", "open": "NEW", "canceled": "CANCELED"}
#: the Binance order type of a book order: (kind, has a limit) → type
TYPES = {("market", False): "MARKET", ("stop", False): "STOP_LOSS", ("stop", True): "STOP_LOSS_LIMIT"}


@dataclass
class BinanceOrders(OrderBook):
    """Binance's order and account endpoints over an :class:`OrderBook`."""

    def serve(self) -> None:
        self.server.route("POST", "/api/v3/order", self.signed(self._create))
        self.server.route("GET", "/api/v3/order", self.signed(self._query))
        self.server.route("DELETE", "/api/v3/order", self.signed(self._cancel))
        self.server.route("GET", "/api/v3/myTrades", self.signed(self._trades))
        self.server.route("GET", "/api/v3/account", self.signed(self._account))

    def refuse_unsigned(self, request: Request) -> Response | None:
        return verify_signature(request, lambda key: self.secret if key == self.api_key else None,
                                now_ms=self.server.now())

    def _create(self, request: Request) -> Response:
        params = {**request.query, **request.form}
        fault = self.placement_fault()
        if fault == "server_error":
            return 503, "Service Unavailable", {"Content-Type": "text/plain"}
        if fault == "delisted":
            return error(400, -1121, "Invalid symbol.")
        if fault == "rate_limited":
            return error(429, -1003, "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute.",
                         {"Retry-After": "1"})
        if fault == "ip_banned":
            return error(418, -1003, f"Way too many requests; IP(127.0.0.1) banned until {self.server.now() + 2000}.",
                         {"Retry-After": "2"})
        if fault == "insufficient_balance":
            return error(400, -2010, "Account has insufficient balance for requested action.")
        symbol = params["symbol"][:-4] + "/" + params["symbol"][-4:]
        if params["type"] != "MARKET":
            return self._create_stop(params, symbol)
        placed = self.place(params["newClientOrderId"], symbol, params["side"].lower(), float(params["quantity"]),
                            partial=fault == "partial_fill")
        if placed == "duplicate":
            return error(400, -2010, "Duplicate order sent.")
        if placed == "insufficient_balance":
            return error(400, -2010, "Account has insufficient balance for requested action.")
        assert isinstance(placed, BookOrder)
        self.after_accepting(fault)
        return 200, {**_order(placed), "transactTime": placed.time_ms,
                     "fills": [{"price": f"{placed.price:.8f}", "qty": f"{placed.filled:.8f}",
                                "commission": f"{placed.fee:.8f}", "commissionAsset": placed.fee_asset,
                                "tradeId": int(placed.order_id) + 1}]}, {}

    def _create_stop(self, params: dict[str, str], symbol: str) -> Response:
        kind = params["type"]
        if kind not in self.server.order_types or params["side"] != "SELL" or "stopPrice" not in params:
            return error(400, -1013, "Invalid order type.")
        if kind == "STOP_LOSS_LIMIT" and ("price" not in params or params.get("timeInForce") != "GTC"):
            return error(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        limit = float(params["price"]) if kind == "STOP_LOSS_LIMIT" else None
        placed = self.place_stop(params["newClientOrderId"], symbol, float(params["quantity"]),
                                 float(params["stopPrice"]), limit)
        if placed == "duplicate":
            return error(400, -2010, "Duplicate order sent.")
        if placed == "insufficient_balance":
            return error(400, -2010, "Account has insufficient balance for requested action.")
        assert isinstance(placed, BookOrder)
        return 200, {**_order(placed), "transactTime": placed.time_ms, "workingTime": -1, "fills": []}, {}

    def _cancel(self, request: Request) -> Response:
        params = {**request.query, **request.form}
        found = self.find(params.get("origClientOrderId"), params.get("orderId"))
        canceled = self.cancel(found.client_id) if found is not None else None
        if canceled is None:
            return error(400, -2011, "Unknown order sent.")
        return 200, {**_order(canceled), "origClientOrderId": canceled.client_id,
                     "clientOrderId": "cancel" + canceled.order_id, "transactTime": canceled.time_ms}, {}

    def _trades(self, request: Request) -> Response:
        order = self.find(order_id=request.query.get("orderId"))
        if order is None or order.filled <= 0:
            return 200, [], {}
        return 200, [{"symbol": order.base + order.quote, "id": int(order.order_id) + 1, "orderId": int(order.order_id),
                      "orderListId": -1, "price": f"{order.price:.8f}", "qty": f"{order.filled:.8f}",
                      "quoteQty": f"{order.cost:.8f}", "commission": f"{order.fee:.8f}",
                      "commissionAsset": order.fee_asset, "time": order.time_ms, "isBuyer": order.side == "buy",
                      "isMaker": False, "isBestMatch": True}], {}

    def _query(self, request: Request) -> Response:
        order = None if self.lookup_misses() else self.find(request.query.get("origClientOrderId"),
                                                            request.query.get("orderId"))
        if order is None or order.base + order.quote != request.query.get("symbol"):
            return error(400, -2013, "Order does not exist.")
        return 200, {"stopPrice": "0.00000000", **_order(order), "time": order.time_ms, "updateTime": order.time_ms,
                     "isWorking": True, "origQuoteOrderQty": "0.00000000", "icebergQty": "0.00000000"}, {}

    def _account(self, _request: Request) -> Response:
        balances = [{"asset": a, "free": f"{v:.8f}", "locked": f"{self.locked_of(a):.8f}"}
                    for a, v in self.balance_rows()]
        return 200, {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "canWithdraw": True,
                     "canDeposit": True, "updateTime": self.server.now(), "accountType": "SPOT",
                     "balances": balances, "permissions": ["SPOT"]}, {}


def _order(order: BookOrder) -> dict[str, Any]:
    """The fields Binance's order answers share (``POST`` and ``GET /api/v3/order``)."""
    return {"symbol": order.base + order.quote, "orderId": int(order.order_id), "orderListId": -1,
            "clientOrderId": order.client_id, "price": f"{order.limit or 0.0:.8f}",
            "origQty": f"{order.requested:.8f}", "executedQty": f"{order.filled:.8f}",
            "cummulativeQuoteQty": f"{order.cost:.8f}", "status": STATUS[order.status], "timeInForce": "GTC",
            "type": TYPES[(order.kind, order.limit is not None)], "side": order.side.upper(),
            **({"stopPrice": f"{order.trigger:.8f}"} if order.trigger is not None else {})}
