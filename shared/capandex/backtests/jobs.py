"""A backtest's background steps, by backtest id: the Step Functions tasks and ``capandex serve``'s pool.

When a backtest is too large for the request (:mod:`capandex.backtests.service` decides), it runs
as the state machine ``statemachines/backtest.asl.json`` in AWS — :func:`plan_job` → Map over
:func:`fetch_chunk_job` → :func:`run_job`, with :func:`fail_job` as the catch-all; the Lambda
handlers in ``functions/backtest/handlers.py`` are thin wrappers — and, under ``capandex serve``,
as :func:`run_local` in a thread, calling the same steps in the same order. Each step reads the
backtest's row and calls the seams of :mod:`capandex.backtests.core`; this module adds what a
step needs around them: the row, progress, the request snapshot, completion and failure.

The backtest's inputs (the flow document as validated at submission) are snapshotted in the store
at ``backtests/<user>/<id>/request.json``, so editing the flow while it runs changes nothing; the
result is written next to it as ``result.json`` (metrics, trades, the API's equity curve) and
``equity.npy`` (the equity at every candle). The candle range is read as of the row's creation
(:class:`~capandex.marketdata.CandleRange`), so every step agrees on which candles are closed.

**Retries.** No step loops: exchange reads retry inside :mod:`capandex.exchanges.retry`, and every
step here runs its reads with ``patience(BACKGROUND)`` (6 attempts over up to 90 s per read); the
state machine's ``Retry`` re-invokes a task only for Lambda's own errors. So one candle page that
keeps failing costs 6 requests on every background path (a test counts them), then the backtest
ends ``failed`` with the exchange's message.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from capandex.backtests import core
from capandex.backtests import repository as repo
from capandex.db.session import transaction
from capandex.errors import CapandexError, ValidationFailed
from capandex.telemetry import Metric, count
from capandex.timeutil import epoch_ms

if TYPE_CHECKING:  # capandex.marketdata imports numpy: keep the engine function's cold start lean
    from capandex.engine import BacktestResult
    from capandex.marketdata import BlobStore, CandleRange

logger = logging.getLogger("capandex.backtests")

P = ParamSpec("P")
R = TypeVar("R")

#: the latency assumed per exchange request when sizing work (seconds)
ASSUMED_LATENCY_S = 0.25
#: the most chunk fetches run at once for one backtest (Step Functions Map)
MAX_CONCURRENCY = 10
#: progress (percent) when planning is done, and when every chunk is in the store
PLANNED, FETCHED = 5.0, 90.0


def request_key(user_id: uuid.UUID, backtest_id: str) -> str:
    return f"backtests/{user_id}/{backtest_id}/request.json"


def result_key(user_id: uuid.UUID, backtest_id: str) -> str:
    return f"backtests/{user_id}/{backtest_id}/result.json"


def max_concurrency(rate_limit_ms: float) -> int:
    """Chunk fetches to run at once: enough requests in flight to use the exchange's request
    budget (``1000 / rate_limit_ms`` per second) at :data:`ASSUMED_LATENCY_S` each, at most
    :data:`MAX_CONCURRENCY`. Binance (50 ms) → 5, OKX (110 ms) → 3, Kraken (1 s) → 1."""
    return max(1, min(MAX_CONCURRENCY, math.ceil(1000.0 / max(rate_limit_ms, 1.0) * ASSUMED_LATENCY_S)))


def in_background(step: Callable[P, R]) -> Callable[P, R]:
    """Run ``step``'s exchange reads with the background :class:`~capandex.exchanges.retry.Patience`."""

    @functools.wraps(step)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from capandex.exchanges.retry import BACKGROUND, patience

        with patience(BACKGROUND):
            return step(*args, **kwargs)

    return wrapper


def _row(user_id: uuid.UUID, backtest_id: str) -> Any:
    with transaction(user_id) as conn:
        return repo.get(conn, user_id=user_id, backtest_id=backtest_id)


def span_of(row: Any) -> CandleRange:
    """The row's candle range, as of the backtest's submission."""
    from capandex.marketdata import CandleRange

    return CandleRange(row.exchange, row.symbol, row.timeframe, row.start_ms, row.end_ms, epoch_ms(row.created_at))


def _store(store: BlobStore | None) -> BlobStore:
    from capandex.marketdata import get_store

    return store or get_store()


def snapshot(store: BlobStore, user_id: uuid.UUID, backtest_id: str, flow: dict[str, Any]) -> None:
    """Keep the flow document as submitted for the background steps (see the module docstring)."""
    store.put(request_key(user_id, backtest_id), json.dumps({"flow": flow}).encode(), "application/json")


def read_snapshot(store: BlobStore, user_id: uuid.UUID, backtest_id: str) -> dict[str, Any]:
    data = store.get(request_key(user_id, backtest_id))
    if data is None:
        raise ValidationFailed("The backtest's request snapshot is missing; submit it again.")
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def progress(user_id: uuid.UUID, backtest_id: str, percent: float, *, increment: bool = False) -> None:
    with transaction(user_id) as conn:
        repo.set_progress(conn, user_id=user_id, backtest_id=backtest_id, progress=percent, increment=increment)


@in_background
def plan_job(backtest_id: str, user_id: uuid.UUID, *, store: BlobStore | None = None) -> dict[str, Any]:
    """Step 1: the chunks still missing from the store, and how many to fetch at once.

    Returns ``{"backtestId", "userId", "chunks": [{"backtestId", "userId", "start", "progressStep"}],
    "maxConcurrency"}`` — the state machine's Map iterates over ``chunks``.
    """
    from capandex.exchanges import get_client

    row = _row(user_id, backtest_id)
    client = get_client(row.exchange)
    missing = [p.start_ms for p in core.plan(span_of(row), client, _store(store)) if not p.ready]
    step = (FETCHED - PLANNED) / len(missing) if missing else 0.0
    progress(user_id, backtest_id, PLANNED if missing else FETCHED)
    ids = {"backtestId": backtest_id, "userId": str(user_id)}
    return {**ids, "chunks": [{**ids, "start": start, "progressStep": step} for start in missing],
            "maxConcurrency": max_concurrency(client.rate_limit_ms)}


@in_background
def fetch_chunk_job(backtest_id: str, user_id: uuid.UUID, start_ms: int, progress_step: float = 0.0, *,
                    store: BlobStore | None = None) -> dict[str, Any]:
    """Step 2 (one Map item): fetch one chunk into the store. Returns ``{"start", "pages"}``."""
    from capandex.exchanges import get_client

    row = _row(user_id, backtest_id)
    pages = core.fetch_chunk(span_of(row), start_ms, get_client(row.exchange), _store(store))
    if progress_step:
        progress(user_id, backtest_id, progress_step, increment=True)
    return {"start": start_ms, "pages": pages}


@in_background
def run_job(backtest_id: str, user_id: uuid.UUID, *, store: BlobStore | None = None) -> dict[str, Any]:
    """Step 3: load the candles from the store (step 2 put them there: no exchange request), run
    the snapshotted flow, store the result and mark the backtest completed. Returns the public
    result (see :func:`record_result`)."""
    from capandex.exchanges import get_client

    store = _store(store)
    row = _row(user_id, backtest_id)
    span = span_of(row)
    candles = core.load_candles(span, core.plan(span, get_client(row.exchange), store), store)
    result = core.run(read_snapshot(store, user_id, backtest_id)["flow"], candles)
    return record_result(backtest_id, user_id, result, store)


def record_result(backtest_id: str, user_id: uuid.UUID, result: BacktestResult, store: BlobStore) -> dict[str, Any]:
    """Store ``result`` and mark the backtest completed. Returns what ``GET`` will show:
    ``{"backtestId", "status": "completed", "progress": 100.0, "metrics", "trades", "equityCurve",
    "warnings"}``."""
    key = result_key(user_id, backtest_id)
    body = core.store_result(store, key, result)
    with transaction(user_id) as conn:
        repo.complete(conn, user_id=user_id, backtest_id=backtest_id, metrics=body["metrics"], result_key=key)
    count(Metric.BACKTESTS_RUN)
    return {"backtestId": backtest_id, "status": repo.COMPLETED, "progress": 100.0, **body}


def fail_job(backtest_id: str, user_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """The catch-all: mark the backtest failed with ``reason`` (if it is still running)."""
    with transaction(user_id) as conn:
        repo.fail(conn, user_id=user_id, backtest_id=backtest_id, reason=reason)
    count(Metric.BACKTESTS_FAILED)
    return {"backtestId": backtest_id, "status": repo.FAILED, "error": reason}


def reason_of(exc: BaseException) -> str:
    """What a user is told: a Capandex error's message; a bug is logged and told generically."""
    if isinstance(exc, CapandexError):
        return exc.message
    return "The backtest failed because of an internal error; it has been logged."


def run_local(backtest_id: str, user_id: uuid.UUID) -> None:
    """The whole backtest in this process, step by step as the state machine runs it (a background
    thread of ``capandex serve``). A step's failure ends the backtest ``failed`` with its reason."""
    try:
        planned = plan_job(backtest_id, user_id)
        for chunk in planned["chunks"]:
            fetch_chunk_job(backtest_id, user_id, chunk["start"], chunk["progressStep"])
        run_job(backtest_id, user_id)
    except Exception as exc:
        if not isinstance(exc, CapandexError):
            logger.exception("backtest %s failed", backtest_id)
        fail_job(backtest_id, user_id, reason_of(exc))
