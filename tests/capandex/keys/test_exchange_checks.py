"""Credential checks through the real ccxt against the loopback Binance, whose signed endpoints
verify the HMAC signature with the registered secret."""

from __future__ import annotations

import uuid

import pytest

from capandex.errors import UpstreamUnavailable
from capandex.exchanges import Credentials
from capandex.exchanges.account import (
    binance_permissions,
    check_credentials,
    fetch_stablecoin_balance,
    okx_permissions,
    stablecoin_total,
)
from tests.utils import secret_guard
from tests.utils.binance_server import error, server_error


def creds() -> Credentials:
    c = Credentials("ak" + uuid.uuid4().hex, "sk" + uuid.uuid4().hex)
    secret_guard.register(c.api_key, c.secret)
    return c


BALANCES = {"USDT": (1000.25, 200.0), "USDC": (34.25, 0.0), "FDUSD": (0.5, 0.0), "BTC": (2.0, 0.0),
            "ETH": (0.0, 0.0)}


def test_valid_key_reports_permissions_and_stablecoin_balance(signed_binance) -> None:
    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES, enableWithdrawals=True)
    result = check_credentials("binance", c)
    assert result.valid is True and result.reason is None
    assert result.permissions == ["read", "trade", "withdraw"]
    assert result.balance_usd == 1235.0  # USDT free+locked + USDC + FDUSD; BTC not counted
    assert [p for p, _ in signed_binance.verified] == ["/api/v3/account", "/sapi/v1/account/apiRestrictions"]
    assert signed_binance.server.unhandled == []


def test_wrong_secret_and_unknown_key_are_invalid_not_errors(signed_binance) -> None:
    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES)
    wrong = check_credentials("binance", Credentials(c.api_key, "not-" + c.secret))
    assert wrong.valid is False and "Signature for this request is not valid" in wrong.reason
    unknown = check_credentials("binance", creds())
    assert unknown.valid is False and "Invalid API-key" in unknown.reason
    assert [code for _, code in signed_binance.rejected] == [-1022, -2015]
    assert c.secret not in wrong.reason and c.api_key not in unknown.reason


def test_exchange_bad_request_on_the_key_is_invalid(signed_binance) -> None:
    # Real Binance maps -1022 on its spot API to ccxt's BadRequest (not AuthenticationError):
    # an exchange refusing the keyed request as bad input means the keys do not work.
    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES)
    signed_binance.server.inject("/api/v3/account", lambda _r, _h: error(400, -1100, "Illegal characters found."))
    result = check_credentials("binance", c)
    assert result.valid is False and "Illegal characters" in result.reason


def test_unreachable_exchange_raises_503(signed_binance, monkeypatch) -> None:
    from capandex.exchanges import retry

    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES)
    signed_binance.server.inject("/api/v3/account", server_error(503), times=5)
    with pytest.raises(UpstreamUnavailable):
        check_credentials("binance", c)


def test_permission_endpoint_failure_does_not_fail_the_check(signed_binance) -> None:
    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES)
    signed_binance.server.inject("/sapi/v1/account/apiRestrictions", server_error(500), times=5)
    result = check_credentials("binance", c)
    assert result.valid is True and result.permissions is None


def test_checked_keys_are_not_cached(signed_binance) -> None:
    from capandex.exchanges import client

    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES)
    assert fetch_stablecoin_balance("binance", c) == 1235.0
    check_credentials("binance", c)
    assert all(key[1] is None for key in client._clients)  # only public clients stay in the container
    # markets come from the public client: exchangeInfo fetched once for both calls
    assert signed_binance.server.count("/api/v3/exchangeInfo") == 1


def test_helpers() -> None:
    assert stablecoin_total({"total": {"USDT": 1.5, "DAI": None, "USD": 2, "BTC": 9}}) == 3.5
    assert stablecoin_total({}) == 0.0
    assert binance_permissions({"enableReading": True, "enableFutures": True, "ipRestrict": True}) == \
        ["read", "futures"]
    assert okx_permissions({"code": "0", "data": [{"perm": "read_only,trade"}]}) == ["read", "trade"]
    assert okx_permissions({"data": []}) == []


def test_a_wrong_secret_is_invalid_credentials_for_the_live_engine_too(signed_binance) -> None:
    """Binance -1022 (bad signature) reaches every caller as InvalidCredentials, not a bad request."""
    from capandex.errors import InvalidCredentials
    from capandex.exchanges import get_client

    c = creds()
    signed_binance.add_account(c.api_key, c.secret, BALANCES)
    with pytest.raises(InvalidCredentials, match="rejected the API"):
        get_client("binance", Credentials(c.api_key, "not-" + c.secret)).fetch_balance()
