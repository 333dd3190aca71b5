"""The dashboard's balance: the USD value of the stablecoins on every exchange key of a user.

Only keys that passed validation (``isValid`` true) are asked: the balance route must not become
a way around the validation rate limit (save candidate keys, then let this route try each one on
the exchange). A key never validated, or rejected at its last check, is listed with an ``error``
saying so and costs no exchange call; a key the exchange rejects here is marked invalid, so it
is not tried again until it is validated anew.

Each validated key is asked concurrently (a thread pool) and given ``CAPANDEX_BALANCE_TIMEOUT_S``
seconds; its request books the key's request budget first, the one its live executions share
(:mod:`capandex.live.budget`), so reloading the dashboard cannot push a key that fifty flows trade on
over the exchange's limit, nor call an exchange that asked the key to back off (a slot further
away than half the timeout is not waited for: that key is listed as rate limited); a key that
fails or runs out of time is listed with an ``error`` (and ``balanceUsd: null``) and does not fail
the answer. Each key's outcome is cached for
:data:`CACHE_SECONDS` in the container, so reloading the dashboard does not call the exchange
again; a key validated since (its ``validated_at`` moved, in whichever function validated it) is
asked anew. Stablecoins count one for one as US dollars (:data:`capandex.exchanges.account.STABLECOINS`);
other assets are not priced.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from capandex.db.schema import exchange_keys
from capandex.errors import CapandexError, InvalidCredentials
from capandex.ttlcache import TTLCache

logger = logging.getLogger("capandex.keys")

#: most exchange calls in flight at once for one request
MAX_WORKERS = 8
#: seconds a key's balance (or its error) is reused before the exchange is asked again
CACHE_SECONDS = 30.0
#: cached keys per container (expired ones, else the oldest, dropped first)
CACHE_ENTRIES = 4096

NOT_VALIDATED = "Not validated: validate this key first (POST /api/exchange-keys/validate)."
REJECTED = "The exchange rejected this key at its last check; update it or validate it again."


@dataclass(frozen=True, slots=True)
class _Outcome:
    balance: float | None
    error: str | None = None


#: (user, key id, the key's validated_at) → its outcome: a key validated again since is another key
_cache = TTLCache(CACHE_SECONDS, max_items=CACHE_ENTRIES)


def clear_cache() -> None:
    """Forget every cached balance (tests; a key's deletion needs nothing: its id is never reused)."""
    _cache.clear()


def _balance_of(exchange_id: str, sealed: Any, user_id: uuid.UUID, key_id: str, timeout_s: float) -> float:
    from capandex.exchanges.account import fetch_stablecoin_balance
    from capandex.keys.exchange import open_credentials
    from capandex.live.budget import KeyBudget

    # Decrypted inside the worker: the secret exists only for this key's call.
    credentials = open_credentials(sealed, user_id=user_id, key_id=key_id)
    return fetch_stablecoin_balance(exchange_id, credentials, timeout_s=timeout_s, budget=lambda limit: KeyBudget(
        user_id, key_id, limit, max_wait_s=timeout_s / 2))


def _outcome_of(future: Any, row: Any, timeout_s: float) -> _Outcome:
    if not future.done():
        return _Outcome(None, f"{row.exchange} did not answer within {timeout_s:g} s.")
    exc = future.exception()
    if exc is None:
        return _Outcome(float(future.result()))
    if isinstance(exc, CapandexError):
        return _Outcome(None, exc.message)
    logger.error("balance failed", exc_info=exc, extra={"key_id": row.id, "exchange": row.exchange})
    return _Outcome(None, "The balance could not be read.")  # a bug: logged, no details shown


def _ask_exchanges(rows: list[Any], user_id: uuid.UUID, timeout_s: float) -> dict[str, _Outcome]:
    """Each row's outcome, asked concurrently under one deadline; rejected keys marked invalid."""
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(rows)), thread_name_prefix="balance")
    try:
        futures = [pool.submit(_balance_of, r.exchange, r.sealed, user_id, r.id, timeout_s) for r in rows]
        # every call started at once (up to MAX_WORKERS), so one deadline bounds them all
        wait(futures, timeout=timeout_s * (1 + (len(rows) - 1) // MAX_WORKERS))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung exchange must not delay the answer
    outcomes = {row.id: _outcome_of(future, row, timeout_s) for row, future in zip(rows, futures, strict=True)}
    rejected = [row.id for row, future in zip(rows, futures, strict=True)
                if future.done() and isinstance(future.exception(), InvalidCredentials)]
    if rejected:
        from capandex.db.session import transaction
        from capandex.keys.exchange import record_validation

        with transaction(user_id) as conn:
            for key_id in rejected:
                record_validation(conn, user_id=user_id, key_id=key_id, valid=False)
    return outcomes


def dashboard_balance(*, user_id: uuid.UUID, timeout_s: float | None = None) -> dict[str, Any]:
    """``{"totalUsd", "exchanges": [{"id", "exchange", "label", "balanceUsd", "error"?}]}``, oldest key first.

    Args:
        timeout_s: seconds each exchange gets (default ``CAPANDEX_BALANCE_TIMEOUT_S``); the whole
            answer takes about that long at most, however many keys there are.
    """
    from capandex.config import get_settings
    from capandex.db.session import transaction

    timeout_s = timeout_s if timeout_s is not None else get_settings().balance_timeout_s
    with transaction(user_id) as conn:  # closed before any exchange is called
        rows = conn.execute(select(exchange_keys.c.id, exchange_keys.c.exchange, exchange_keys.c.label,
                                   exchange_keys.c.sealed, exchange_keys.c.is_valid, exchange_keys.c.validated_at)
                            .where(exchange_keys.c.user_id == user_id)
                            .order_by(exchange_keys.c.created_at, exchange_keys.c.id)).all()
    outcomes: dict[str, _Outcome] = {}
    for row in rows:
        if row.is_valid is not True:
            outcomes[row.id] = _Outcome(None, REJECTED if row.is_valid is False else NOT_VALIDATED)
        elif (cached := _cache.get((user_id, row.id, row.validated_at))) is not None:
            outcomes[row.id] = cached
    to_ask = [row for row in rows if row.id not in outcomes]
    if to_ask:
        asked = _ask_exchanges(to_ask, user_id, timeout_s)
        for row in to_ask:
            _cache.put((user_id, row.id, row.validated_at), asked[row.id])
        outcomes.update(asked)
    entries, total = [], 0.0
    for row in rows:
        outcome = outcomes[row.id]
        entry: dict[str, Any] = {"id": row.id, "exchange": row.exchange, "label": row.label,
                                 "balanceUsd": None if outcome.balance is None else round(outcome.balance, 2)}
        if outcome.error:
            entry["error"] = outcome.error
        total += outcome.balance or 0.0
        entries.append(entry)
    return {"totalUsd": round(total, 2), "exchanges": entries}
