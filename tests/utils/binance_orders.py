"""Binance spot order endpoints for the loopback exchange (:mod:`tests.utils.binance_server`).

Install on a server with ``orders = BinanceOrders.install(server)``. Served, in Binance's wire
format: ``POST /api/v3/order`` (MARKET orders; ``newClientOrderId`` honoured; as on Binance, a reused id is
refused with ``-2010 "Duplicate order sent."`` only while the earlier order is still open — a
filled (market) order's id is accepted again, so ``placed`` shows any second placement; with
``reuse_filled_ids=False`` every reuse is refused), ``GET /api/v3/order`` (by
``origClientOrderId`` or ``orderId``; unknown → ``-2013 "Order does not exist."``) and
``GET /api/v3/account`` (balances, debited and credited by fills). Signed requests must carry
``X-MBX-APIKEY``, ``timestamp`` and a 64-hex ``signature``.

Order faults (one-shot, in order)::

    orders.fail_next("accept_then_timeout")   # the order IS placed, the answer comes too late
    orders.fail_next("server_error")          # 503 before anything happens
    orders.fail_next("insufficient_balance")  # -2010 "Account has insufficient balance ..."
    orders.fail_next("delisted")              # -1121 "Invalid symbol."
    orders.fail_next("partial_fill")          # EXPIRED after filling half (market order out of liquidity)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.utils.binance_server import BinanceServer, Request, Response, error


@dataclass
class BinanceOrders:
    """Order book of the loopback exchange: every accepted order, by client id."""

    server: BinanceServer
    prices: dict[str, float] = field(default_factory=lambda: {"BTCUSDT": 40_000.0, "ETHUSDT": 2_500.0})
    balances: dict[str, float] = field(default_factory=lambda: {"USDT": 1_000_000.0, "BTC": 0.0, "ETH": 0.0})
    commission: float = 0.001
    late_seconds: float = 1.5
    reuse_filled_ids: bool = True

    def __post_init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.placed: list[str] = []  # client ids in acceptance order (a duplicate would show twice)
        self.faults: deque[str] = deque()
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()

    @classmethod
    def install(cls, server: BinanceServer, **kwargs: Any) -> BinanceOrders:
        book = cls(server, **kwargs)
        server.route("POST", "/api/v3/order", book._create)
        server.route("GET", "/api/v3/order", book._query)
        server.route("GET", "/api/v3/account", book._account)
        return book

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.faults.extend([kind] * times)

    # -- routes ----------------------------------------------------------------------------------
    def _signed(self, request: Request, params: dict[str, str]) -> Response | None:
        signature = params.get("signature", "")
        if not request.headers.get("x-mbx-apikey") or "timestamp" not in params or len(signature) != 64:
            return error(401, -1022, "Signature for this request is not valid.")
        return None

    def _create(self, request: Request) -> Response:
        params = {**request.query, **request.form}
        refused = self._signed(request, params)
        if refused:
            return refused
        fault = self.faults.popleft() if self.faults else None
        if fault == "server_error":
            return 503, "Service Unavailable", {"Content-Type": "text/plain"}
        if fault == "delisted":
            return error(400, -1121, "Invalid symbol.")
        if fault == "insufficient_balance":
            return error(400, -2010, "Account has insufficient balance for requested action.")
        symbol, side, cid = params["symbol"], params["side"], params.get("newClientOrderId") or f"auto{time.time()}"
        requested = qty = float(params["quantity"])
        status = "FILLED"
        if fault == "partial_fill":
            qty, status = qty / 2, "EXPIRED"
        with self._lock:
            previous = self.orders.get(cid)
            still_open = previous is not None and previous["status"] in ("NEW", "PARTIALLY_FILLED")
            if still_open or (previous is not None and not self.reuse_filled_ids):
                return error(400, -2010, "Duplicate order sent.")
            price = self.prices[symbol]
            base, quote = symbol[:-4], symbol[-4:]
            cost = qty * price
            if (side == "BUY" and self.balances.get(quote, 0.0) < cost) or \
                    (side == "SELL" and self.balances.get(base, 0.0) < qty - 1e-12):
                return error(400, -2010, "Account has insufficient balance for requested action.")
            fee = cost * self.commission  # charged in the quote asset here
            if side == "BUY":
                self.balances[quote] -= cost + fee
                self.balances[base] = self.balances.get(base, 0.0) + qty
            else:
                self.balances[base] -= qty
                self.balances[quote] = self.balances.get(quote, 0.0) + cost - fee
            order = {"symbol": symbol, "orderId": next(self._ids), "orderListId": -1, "clientOrderId": cid,
                     "transactTime": self.server.now(), "price": "0.00000000", "origQty": f"{requested:.8f}",
                     "executedQty": f"{qty:.8f}", "cummulativeQuoteQty": f"{cost:.8f}", "status": status,
                     "timeInForce": "GTC", "type": "MARKET", "side": side,
                     "fills": [{"price": f"{price:.8f}", "qty": f"{qty:.8f}", "commission": f"{fee:.8f}",
                                "commissionAsset": quote, "tradeId": next(self._ids)}]}
            self.orders[cid] = order
            self.placed.append(cid)
        if fault == "accept_then_timeout":
            time.sleep(self.late_seconds)
        return 200, order, {}

    def _query(self, request: Request) -> Response:
        refused = self._signed(request, request.query)
        if refused:
            return refused
        cid = request.query.get("origClientOrderId")
        with self._lock:
            order = self.orders.get(cid) if cid else next(
                (o for o in self.orders.values() if str(o["orderId"]) == request.query.get("orderId")), None)
        if order is None:
            return error(400, -2013, "Order does not exist.")
        body = {k: v for k, v in order.items() if k not in ("fills", "transactTime")}
        body.update(time=order["transactTime"], updateTime=order["transactTime"], isWorking=True,
                    origQuoteOrderQty="0.00000000", stopPrice="0.00000000", icebergQty="0.00000000")
        return 200, body, {}

    def _account(self, request: Request) -> Response:
        refused = self._signed(request, request.query)
        if refused:
            return refused
        with self._lock:
            balances = [{"asset": a, "free": f"{v:.8f}", "locked": "0.00000000"} for a, v in self.balances.items()]
        return 200, {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "canWithdraw": True,
                     "canDeposit": True, "updateTime": self.server.now(), "accountType": "SPOT",
                     "balances": balances, "permissions": ["SPOT"]}, {}
