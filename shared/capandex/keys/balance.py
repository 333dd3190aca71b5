"""The dashboard's balance: the USD value of the stablecoins on every exchange key of a user.

Each key is asked concurrently (a thread pool) and given ``CAPANDEX_BALANCE_TIMEOUT_S`` seconds;
a key that fails or runs out of time is listed with an ``error`` (and ``balanceUsd: null``) and
does not fail the answer. Stablecoins count one for one as US dollars
(:data:`capandex.exchanges.account.STABLECOINS`); other assets are not priced.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from sqlalchemy import select

from capandex.db.schema import exchange_keys
from capandex.errors import CapandexError

#: most exchange calls in flight at once for one request
MAX_WORKERS = 8


def _balance_of(exchange_id: str, sealed: Any, user_id: uuid.UUID, key_id: str, timeout_s: float) -> float:
    from capandex.exchanges.account import fetch_stablecoin_balance
    from capandex.keys.exchange import open_credentials

    # Decrypted inside the worker: the secret exists only for this key's call.
    credentials = open_credentials(sealed, user_id=user_id, key_id=key_id)
    return fetch_stablecoin_balance(exchange_id, credentials, timeout_s=timeout_s)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CapandexError):
        return exc.message
    return "The balance could not be read."  # a bug: logged by the caller, no details shown


def dashboard_balance(*, user_id: uuid.UUID, timeout_s: float | None = None) -> dict[str, Any]:
    """``{"totalUsd", "exchanges": [{"id", "exchange", "label", "balanceUsd", "error"?}]}``.

    Args:
        timeout_s: seconds each exchange gets (default ``CAPANDEX_BALANCE_TIMEOUT_S``); the whole
            answer takes about that long at most, however many keys there are.
    """
    import logging

    from capandex.config import get_settings
    from capandex.db.session import transaction

    timeout_s = timeout_s if timeout_s is not None else get_settings().balance_timeout_s
    with transaction(user_id) as conn:  # closed before any exchange is called
        rows = conn.execute(select(exchange_keys.c.id, exchange_keys.c.exchange, exchange_keys.c.label,
                                   exchange_keys.c.sealed)
                            .where(exchange_keys.c.user_id == user_id)
                            .order_by(exchange_keys.c.created_at, exchange_keys.c.id)).all()
    if not rows:
        return {"totalUsd": 0.0, "exchanges": []}
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(rows)), thread_name_prefix="balance")
    try:
        futures = [pool.submit(_balance_of, r.exchange, r.sealed, user_id, r.id, timeout_s) for r in rows]
        # every call started at once (up to MAX_WORKERS), so one deadline bounds them all
        wait(futures, timeout=timeout_s * (1 + (len(rows) - 1) // MAX_WORKERS))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung exchange must not delay the answer
    entries, total = [], 0.0
    for row, future in zip(rows, futures, strict=True):
        entry: dict[str, Any] = {"id": row.id, "exchange": row.exchange, "label": row.label, "balanceUsd": None}
        if not future.done():
            entry["error"] = f"{row.exchange} did not answer within {timeout_s:g} s."
        elif future.exception() is not None:
            exc = future.exception()
            if not isinstance(exc, CapandexError):
                logging.getLogger("capandex.keys").error("balance failed", exc_info=exc,
                                                         extra={"key_id": row.id, "exchange": row.exchange})
            entry["error"] = _error_text(exc)  # type: ignore[arg-type]
        else:
            entry["balanceUsd"] = round(future.result(), 2)
            total += future.result()
        entries.append(entry)
    return {"totalUsd": round(total, 2), "exchanges": entries}
