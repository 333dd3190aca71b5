"""The steps of a backtest, shared by every way of running one.

``POST /api/engine/backtest`` runs them in the request when the range is small
(:func:`run_job` fetches what is missing on the way), in a background thread pool under
``capandex serve`` (:func:`run_local`), and as the Lambda tasks of the Step Functions state machine
``statemachines/backtest.asl.json`` in AWS: :func:`plan_job` → Map over :func:`fetch_chunk_job` →
:func:`run_job`, with :func:`fail_job` as the catch-all. The Lambda handlers are thin wrappers.

The backtest's inputs (the flow document as validated at submission, capital, fee, slippage) are
snapshotted in the store at ``backtests/<user>/<id>/request.json``, so editing the flow while it
runs changes nothing; the result is written next to it as ``result.json`` (metrics, trades, the
API's equity curve) and ``equity.npy`` (the equity at every candle).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from capandex.backtests import repository as repo
from capandex.db.session import transaction
from capandex.errors import CapandexError, RateLimited, UpstreamError, UpstreamUnavailable, ValidationFailed

if TYPE_CHECKING:  # capandex.marketdata imports numpy: keep the engine function's cold start lean
    from capandex.marketdata import BlobStore

logger = logging.getLogger("capandex.backtests")

T = TypeVar("T")

#: the latency assumed per exchange request when sizing work (seconds)
ASSUMED_LATENCY_S = 0.25
#: the most chunk fetches run at once for one backtest (Step Functions Map)
MAX_CONCURRENCY = 10
#: progress (percent) when planning is done, and when every chunk is in the store
PLANNED, FETCHED = 5.0, 90.0
#: attempts per chunk on the in-process path (the state machine's Retry does the same in AWS)
CHUNK_ATTEMPTS = 4
#: indirection so tests patch the backoff out
sleep = time.sleep


def request_key(user_id: uuid.UUID, backtest_id: str) -> str:
    return f"backtests/{user_id}/{backtest_id}/request.json"


def result_key(user_id: uuid.UUID, backtest_id: str) -> str:
    return f"backtests/{user_id}/{backtest_id}/result.json"


def max_concurrency(rate_limit_ms: float) -> int:
    """Chunk fetches to run at once: enough requests in flight to use the exchange's request
    budget (``1000 / rate_limit_ms`` per second) at :data:`ASSUMED_LATENCY_S` each, at most
    :data:`MAX_CONCURRENCY`. Binance (50 ms) → 5, OKX (110 ms) → 3, Kraken (1 s) → 1."""
    return max(1, min(MAX_CONCURRENCY, math.ceil(1000.0 / max(rate_limit_ms, 1.0) * ASSUMED_LATENCY_S)))


def _row(user_id: uuid.UUID, backtest_id: str) -> Any:
    with transaction(user_id) as conn:
        return repo.get(conn, user_id=user_id, backtest_id=backtest_id)


def _store(store: BlobStore | None) -> BlobStore:
    from capandex.marketdata import get_store

    return store or get_store()


def _snapshot(store: BlobStore, user_id: uuid.UUID, backtest_id: str) -> dict[str, Any]:
    data = store.get(request_key(user_id, backtest_id))
    if data is None:
        raise ValidationFailed("The backtest's request snapshot is missing; submit it again.")
    return json.loads(data)


def progress(user_id: uuid.UUID, backtest_id: str, percent: float, *, increment: bool = False) -> None:
    with transaction(user_id) as conn:
        repo.set_progress(conn, user_id=user_id, backtest_id=backtest_id, progress=percent, increment=increment)


def plan_job(backtest_id: str, user_id: uuid.UUID, *, store: BlobStore | None = None) -> dict[str, Any]:
    """Step 1: the chunks still missing from the store, and how many to fetch at once.

    Returns ``{"backtestId", "userId", "chunks": [{"backtestId", "userId", "start", "progressStep"}],
    "maxConcurrency"}`` — the state machine's Map iterates over ``chunks``.
    """
    from capandex.exchanges import get_client
    from capandex.marketdata import plan

    store = _store(store)
    row = _row(user_id, backtest_id)
    client = get_client(row.exchange)
    plans = plan(row.exchange, row.symbol, row.timeframe, row.start_ms, row.end_ms,
                 page_size=client.max_page_size(row.timeframe), store=store)
    missing = [p.start_ms for p in plans if not p.ready]
    step = (FETCHED - PLANNED) / len(missing) if missing else 0.0
    progress(user_id, backtest_id, PLANNED if missing else FETCHED)
    ids = {"backtestId": backtest_id, "userId": str(user_id)}
    return {**ids, "chunks": [{**ids, "start": start, "progressStep": step} for start in missing],
            "maxConcurrency": max_concurrency(client.rate_limit_ms)}


def fetch_chunk_job(backtest_id: str, user_id: uuid.UUID, start_ms: int, progress_step: float = 0.0, *,
                    store: BlobStore | None = None) -> dict[str, Any]:
    """Step 2 (one Map item): fetch one chunk into the store. Returns ``{"start", "pages"}``."""
    from capandex.exchanges import get_client
    from capandex.marketdata import ensure_chunk

    row = _row(user_id, backtest_id)
    _, pages = ensure_chunk(get_client(row.exchange), row.exchange, row.symbol, row.timeframe, start_ms,
                            store=_store(store))
    if progress_step:
        progress(user_id, backtest_id, progress_step, increment=True)
    return {"start": start_ms, "pages": pages}


def run_job(backtest_id: str, user_id: uuid.UUID, *, store: BlobStore | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Step 3: load the candles (fetching anything still missing), run the engine, store the result
    and mark the backtest completed. Returns the public result (see :func:`public_result`)."""
    from capandex.engine import API_EQUITY_POINTS, backtest
    from capandex.marketdata import fetch_candles

    store = _store(store)
    row = _row(user_id, backtest_id)
    snapshot = _snapshot(store, user_id, backtest_id)
    candles = fetch_candles(row.exchange, row.symbol, row.timeframe, row.start_ms, row.end_ms,
                            progress=on_progress, store=store)
    if not len(candles):
        raise ValidationFailed(f"{row.exchange} has no {row.timeframe} candles for {row.symbol} in that range.",
                               details=[{"field": "startDate", "message": "no candles between startDate and endDate"}])
    result = backtest(snapshot["flow"], candles, capital=None, fee=None, slippage=None)
    body = result.to_dict(API_EQUITY_POINTS)
    warnings = body.get("warnings", []) + gap_warnings(candles, row.exchange)
    body["warnings"] = warnings
    key = result_key(user_id, backtest_id)
    store.put(key, json.dumps(body, allow_nan=False, separators=(",", ":")).encode(), "application/json")
    store.put(key.replace("result.json", "equity.npy"), _npy(result.equity))
    with transaction(user_id) as conn:
        repo.complete(conn, user_id=user_id, backtest_id=backtest_id, metrics=body["metrics"], result_key=key)
    return {"backtestId": backtest_id, "status": repo.COMPLETED, "progress": 100.0, **body}


def gap_warnings(candles: Any, exchange: str) -> list[str]:
    gaps = getattr(candles, "gaps", ())
    if not gaps:
        return []
    missing = sum(g.missing for g in gaps)
    first = gaps[0].to_dict()
    return [f"{exchange} has no candles for {missing} periods of the range ({len(gaps)} gaps, the first from "
            f"{first['start']} to {first['end']}); the backtest ran over the candles that exist."]


def _npy(values: Any) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float64))
    return buffer.getvalue()


def fail_job(backtest_id: str, user_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """The catch-all: mark the backtest failed with ``reason`` (if it is still running)."""
    with transaction(user_id) as conn:
        repo.fail(conn, user_id=user_id, backtest_id=backtest_id, reason=reason)
    return {"backtestId": backtest_id, "status": repo.FAILED, "error": reason}


def reason_of(exc: BaseException) -> str:
    """What a user is told: a Capandex error's message; a bug is logged and told generically."""
    if isinstance(exc, CapandexError):
        return exc.message
    return "The backtest failed because of an internal error; it has been logged."


def with_retries(fn: Callable[[], T], attempts: int = CHUNK_ATTEMPTS, base_s: float = 1.0) -> T:
    """``fn()`` retried on temporary exchange failures with exponential backoff (1 s, 2 s, 4 s)."""
    for attempt in range(attempts):
        try:
            return fn()
        except (UpstreamUnavailable, RateLimited, UpstreamError):
            if attempt == attempts - 1:
                raise
            sleep(base_s * 2 ** attempt)
    raise AssertionError("unreachable")


def run_local(backtest_id: str, user_id: uuid.UUID) -> None:
    """The whole backtest in this process, as the state machine runs it (background thread)."""
    try:
        planned = plan_job(backtest_id, user_id)
        for chunk in planned["chunks"]:
            with_retries(lambda chunk=chunk: fetch_chunk_job(backtest_id, user_id, chunk["start"],
                                                             chunk["progressStep"]))
        run_job(backtest_id, user_id)
    except Exception as exc:
        if not isinstance(exc, CapandexError):
            logger.exception("backtest %s failed", backtest_id)
        fail_job(backtest_id, user_id, reason_of(exc))
