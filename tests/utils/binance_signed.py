"""Binance's signed (USER_DATA) endpoints for the loopback :class:`BinanceServer`, with real
request signing checks, so a test proves the stored secret was decrypted and used.

What ccxt's ``binance.fetch_balance()`` (spot) calls is ``GET /api/v3/account``; the API key's
permissions are ``GET /sapi/v1/account/apiRestrictions``. Both are served here for the accounts
registered with :meth:`SignedBinance.add_account`.

:func:`verify_signature` applies Binance's rules (reusable for order endpoints)::

    problem = verify_signature(request, signed.secret_of)
    if problem:
        return problem            # Binance's own error status and JSON
    ...

- ``X-MBX-APIKEY`` missing → 401 ``{"code": -2014, "msg": "API-key format invalid."}``;
  unknown → 401 ``{"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}``;
- ``timestamp`` missing → 400 -1102; ``recvWindow`` > 60000 → 400 -1131; a timestamp more than
  ``recvWindow`` ms (default 5000) in the past or 1000 ms in the future → 400 -1021;
- ``signature`` = hex HMAC-SHA256, keyed with the secret, of the *totalParams* (query string
  concatenated with the body, the ``signature`` parameter removed); wrong → 400 -1022.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.utils.binance_server import BinanceServer, Request, Response, error

MAX_RECV_WINDOW = 60_000
DEFAULT_RECV_WINDOW = 5_000

#: Binance's default answer for a fresh read+trade key
DEFAULT_RESTRICTIONS = {
    "ipRestrict": False, "createTime": 1_698_645_219_000, "enableReading": True, "enableWithdrawals": False,
    "enableInternalTransfer": False, "enableMargin": False, "enableFutures": False,
    "permitsUniversalTransfer": False, "enableVanillaOptions": False, "enableFixApiTrade": False,
    "enableFixReadOnly": True, "enableSpotAndMarginTrading": True, "enablePortfolioMarginTrading": False,
}


def _strip_signature(text: str) -> tuple[str, str | None]:
    """``text`` without its ``signature=…`` parameter, and that signature."""
    kept, signature = [], None
    for part in text.split("&") if text else []:
        if part.startswith("signature="):
            signature = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), signature


def verify_signature(request: Request, secret_of: Callable[[str], str | None], *,
                     now_ms: int | None = None) -> Response | None:
    """``None`` when ``request`` is a correctly signed Binance request, else Binance's error answer.

    Args:
        secret_of: the secret registered for an API key, ``None`` for an unknown key.
        now_ms: the server clock (default: the real one).
    """
    api_key = request.headers.get("x-mbx-apikey")
    if not api_key:
        return error(401, -2014, "API-key format invalid.")
    secret = secret_of(api_key)
    if secret is None:
        return error(401, -2015, "Invalid API-key, IP, or permissions for action.")
    query, query_sig = _strip_signature(request.raw_query)
    body, body_sig = _strip_signature(request.body.decode())
    params = {**request.query, **request.form}
    if "timestamp" not in params or not params["timestamp"].isdigit():
        return error(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    recv_window = int(params.get("recvWindow") or DEFAULT_RECV_WINDOW)
    if recv_window > MAX_RECV_WINDOW:
        return error(400, -1131, "recvWindow must be less than 60000.")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    timestamp = int(params["timestamp"])
    if timestamp > now + 1000 or now - timestamp > recv_window:
        return error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    signature = query_sig or body_sig
    expected = hmac.new(secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    if signature is None or not hmac.compare_digest(signature.lower(), expected):
        return error(400, -1022, "Signature for this request is not valid.")
    return None


@dataclass
class Account:
    """One API key's account on the loopback exchange."""

    secret: str
    #: asset → (free, locked)
    balances: dict[str, tuple[float, float]] = field(default_factory=dict)
    restrictions: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESTRICTIONS))
    #: seconds to wait before answering this account's requests (a slow exchange)
    delay_s: float = 0.0


class SignedBinance:
    """Adds the signed account endpoints to ``server``; ``accounts`` maps API key → :class:`Account`.

    ``verified`` lists ``(path, api_key)`` of every request whose signature checked out;
    ``rejected`` lists ``(path, code)`` of every refused one.
    """

    def __init__(self, server: BinanceServer) -> None:
        self.server = server
        self.accounts: dict[str, Account] = {}
        self.verified: list[tuple[str, str]] = []
        self.rejected: list[tuple[str, int]] = []
        server.route("GET", "/api/v3/account", self._signed(self._account))
        server.route("GET", "/sapi/v1/account/apiRestrictions", self._signed(self._restrictions))

    def add_account(self, api_key: str, secret: str, balances: dict[str, tuple[float, float]] | None = None,
                    **restrictions: Any) -> Account:
        account = Account(secret, dict(balances or {}), {**DEFAULT_RESTRICTIONS, **restrictions})
        self.accounts[api_key] = account
        return account

    def secret_of(self, api_key: str) -> str | None:
        account = self.accounts.get(api_key)
        return account.secret if account else None

    def _signed(self, handler: Callable[[Account], Response]) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            problem = verify_signature(request, self.secret_of, now_ms=self.server.now())
            if problem is not None:
                self.rejected.append((request.path, problem[1]["code"]))
                return problem
            api_key = request.headers["x-mbx-apikey"]
            self.verified.append((request.path, api_key))
            account = self.accounts[api_key]
            if account.delay_s:
                time.sleep(account.delay_s)
            return handler(account)
        return serve

    def _account(self, account: Account) -> Response:
        now = self.server.now()
        return 200, {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                                "seller": "0.00000000"},
            "canTrade": bool(account.restrictions.get("enableSpotAndMarginTrading")),
            "canWithdraw": bool(account.restrictions.get("enableWithdrawals")), "canDeposit": True,
            "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": now, "accountType": "SPOT",
            "balances": [{"asset": asset, "free": f"{free:.8f}", "locked": f"{locked:.8f}"}
                         for asset, (free, locked) in sorted(account.balances.items())],
            "permissions": ["SPOT"], "uid": 354_937_868,
        }, {}

    def _restrictions(self, account: Account) -> Response:
        return 200, dict(account.restrictions), {}
