"""Account-level exchange calls made with a user's keys: credential checks, API-key permissions
and stablecoin balances (used by :mod:`capandex.keys`).

Credentials checked here are not the container's cached clients: :func:`transient_client` builds a
fresh ccxt instance for the one call and drops it afterwards, borrowing the market list of the
public client, so a key being validated never stays in memory past the request, and a stream of
validation requests with ever-new keys cannot pile up clients (each holding a full market list).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from capandex.errors import BadRequest, InvalidCredentials
from capandex.exchanges.client import ExchangeClient, get_client, new_instance
from capandex.exchanges.credentials import Credentials
from capandex.exchanges.limits import KeyLimit, RequestBudget, key_limit

logger = logging.getLogger("capandex.exchanges")

#: Assets counted as US dollars one for one in balances (their USD peg is assumed, not priced).
STABLECOINS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USDP", "USD")


@contextmanager
def transient_client(exchange_id: str, credentials: Credentials, *, timeout_s: float | None = None,
                     budget: Callable[[KeyLimit], RequestBudget] | None = None) -> Iterator[ExchangeClient]:
    """A one-off client for ``credentials`` (never cached), configured as :func:`get_client`
    configures them (URLs, sandbox, options), with the public client's markets.

    Args:
        timeout_s: per-request timeout; at most the configured ``exchange_timeout_ms``.
        budget: the request budget of the key, made from the exchange's
            :class:`~capandex.exchanges.limits.KeyLimit`: every request books it first (a saved key
            shares one budget with the live executions trading on it, :mod:`capandex.live.budget`).
    """
    from capandex.config import get_settings

    settings = get_settings()
    public = get_client(exchange_id)  # validates the id (BadRequest naming the supported ones)
    with public.lock:
        if not public.ccxt.markets:
            public.call("loading markets", public.ccxt.load_markets)
        markets, currencies = public.ccxt.markets, public.ccxt.currencies
    timeout_ms = settings.exchange_timeout_ms
    if timeout_s is not None:
        timeout_ms = max(100, min(timeout_ms, int(timeout_s * 1000)))
    sandbox = exchange_id in settings.exchange_sandbox
    base_url = settings.exchange_urls.get(exchange_id) or settings.exchange_urls.get(public.ccxt.id)
    instance = new_instance(public.ccxt.id, credentials, sandbox, base_url, timeout_ms)
    instance.set_markets(markets, currencies)
    limit = key_limit(public.ccxt.id)
    try:
        yield ExchangeClient(exchange_id, instance, budget=budget(limit) if budget is not None else None)
    finally:
        # drop the key material held by the instance as soon as the call is over
        instance.apiKey = instance.secret = instance.password = ""


def stablecoin_total(balance: Mapping[str, Any]) -> float:
    """Sum of the :data:`STABLECOINS` in a ccxt balance's ``total`` (free + used), in USD."""
    totals = balance.get("total") or {}
    return float(sum(float(totals.get(asset) or 0) for asset in STABLECOINS))


# -- permissions: differences between exchanges are data -----------------------------------------

#: Binance GET /sapi/v1/account/apiRestrictions flags → permission names
BINANCE_FLAGS = (("enableReading", "read"), ("enableSpotAndMarginTrading", "trade"),
                 ("enableWithdrawals", "withdraw"), ("enableMargin", "margin"), ("enableFutures", "futures"),
                 ("enableVanillaOptions", "options"), ("enableInternalTransfer", "internal_transfer"),
                 ("permitsUniversalTransfer", "universal_transfer"))

#: OKX GET /api/v5/account/config ``perm`` values → permission names
OKX_PERMS = {"read_only": "read", "trade": "trade", "withdraw": "withdraw"}


def binance_permissions(restrictions: Mapping[str, Any]) -> list[str]:
    return [name for flag, name in BINANCE_FLAGS if restrictions.get(flag) is True]


def okx_permissions(config: Mapping[str, Any]) -> list[str]:
    data = config.get("data") or [{}]
    perms = str((data[0] or {}).get("perm") or "")
    return [OKX_PERMS.get(p.strip(), p.strip()) for p in perms.split(",") if p.strip()]


#: ccxt id → (implicit ccxt method name, parser of its answer)
PERMISSION_READERS: dict[str, tuple[str, Callable[[Mapping[str, Any]], list[str]]]] = {
    "binance": ("sapi_get_account_apirestrictions", binance_permissions),
    "okx": ("private_get_account_config", okx_permissions),
}


def fetch_permissions(client: ExchangeClient) -> list[str] | None:
    """What the API key may do (``["read", "trade", "withdraw", …]``), or ``None`` where the
    exchange does not expose it or the call failed (the key itself was already checked)."""
    reader = PERMISSION_READERS.get(client.ccxt.id)
    if reader is None:
        return None
    method, parse = reader
    try:
        return parse(client.call("reading the API key's permissions", getattr(client.ccxt, method)))
    except InvalidCredentials:
        raise
    except Exception as exc:  # permissions are informative; never fail a check on them
        logger.warning("could not read API key permissions", extra={"exchange": client.id,
                                                                    "error": type(exc).__name__})
        return None


@dataclass(frozen=True)
class CredentialCheck:
    """Whether the exchange accepted the keys; with what permissions and stablecoin balance."""

    valid: bool
    permissions: list[str] | None = None
    balance_usd: float | None = None
    reason: str | None = None


def check_credentials(exchange_id: str, credentials: Credentials, *, timeout_s: float | None = None
                      ) -> CredentialCheck:
    """Call ``fetch_balance`` (and the permission endpoint where there is one) with ``credentials``.

    The exchange refusing the keys (ccxt ``AuthenticationError``, or a ``BadRequest`` as real
    Binance answers a bad signature on its spot API, code -1022) → ``valid=False`` with the
    reason. An unreachable exchange or rate limit raises (503/429): that says nothing about the keys.
    """
    with transient_client(exchange_id, credentials, timeout_s=timeout_s) as client:
        try:
            balance = client.fetch_balance()
        except (InvalidCredentials, BadRequest) as exc:
            return CredentialCheck(False, reason=exc.message)
        return CredentialCheck(True, permissions=fetch_permissions(client),
                               balance_usd=round(stablecoin_total(balance), 2))


def fetch_stablecoin_balance(exchange_id: str, credentials: Credentials, *, timeout_s: float | None = None,
                             budget: Callable[[KeyLimit], RequestBudget] | None = None) -> float:
    """The USD total of the account's stablecoins (``budget``: as :func:`transient_client`'s);
    errors as :mod:`capandex.errors` classes."""
    with transient_client(exchange_id, credentials, timeout_s=timeout_s, budget=budget) as client:
        return stablecoin_total(client.fetch_balance())
