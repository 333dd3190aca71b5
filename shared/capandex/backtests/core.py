"""The backtest core: from a candle range and a flow to a stored result, whoever runs it.

Every way of running a backtest goes through the same five seams, each taking what the one before
produced (so candles are fetched, read and decoded once, and the flow validated once, per process)::

    span = CandleRange(exchange, symbol, timeframe, start_ms, end_ms, as_of_ms)
    plans = plan(span, client, store)                    # 1. chunks covering the range, pages each needs
    fetch_chunk(span, plans[i].start_ms, client, store)  # 2. one missing chunk: exchange → store (fan-out)
    candles = load_candles(span, plans, store, client)   # 3. the candles (fetching the rest, given a client)
    result = run(flow, candles, capital=…, fee=…, slippage=…)  # 4. the engine: no I/O, no clock
    body = store_result(store, key, result)              # 5. result.json, equity.npy, trades.bin; the API's body

Who runs which:

* **In the request** (:func:`capandex.backtests.service.submit`, when the work fits the budget):
  1 → 3 with the client (missing pages fetched on the way) → 4 → 5.
* **Step Functions** (``statemachines/backtest.asl.json``; tasks in :mod:`capandex.backtests.jobs`,
  which ``capandex serve`` runs in a thread the same way): the Plan task 1; the Map one 2 per missing
  chunk; the Run task 1 then 3 **without a client** (the store alone: the Map filled it) → 4 → 5.
* **The CLI** (``capandex backtest``): :func:`capandex.marketdata.fetch_candles` (1 + 3) → 4.
* **Research** (parameter search, walk-forward): 1 and 2 once, then workers call 3 without a client
  and 4 as often as they like over the same candles.

``as_of_ms`` pins which candles count as closed: every step of one backtest passes the same
instant (the submission's), so steps minutes apart agree on the chunks' targets and the Run task
never needs the exchange. Exchange reads retry only inside :mod:`capandex.exchanges.retry`
(nothing here loops): in the request with its default patience, in the background jobs with
``patience(BACKGROUND)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from capandex.errors import ValidationFailed, field_problem

if TYPE_CHECKING:  # numpy, ccxt and the engine load on first use: the engine function's cold start stays lean
    from capandex.engine import BacktestResult, CompiledFlow, Flow
    from capandex.exchanges import ExchangeClient
    from capandex.marketdata import BlobStore, CandleRange, ChunkPlan, FetchedCandles
    from capandex.marketdata.candles import Progress


def plan(span: CandleRange, client: ExchangeClient, store: BlobStore) -> list[ChunkPlan]:
    """Seam 1: the chunks covering ``span``, what the store holds of each (decoded, kept in the
    plan) and the pages each still needs at the exchange's page size. No exchange request."""
    from capandex.marketdata import plan as plan_chunks

    return plan_chunks(span, page_size=client.max_page_size(span.timeframe), store=store)


def fetch_chunk(span: CandleRange, start_ms: int, client: ExchangeClient, store: BlobStore) -> int:
    """Seam 2: fill the chunk at ``start_ms`` from the exchange into the store; the pages it took
    (0 when the store already had it)."""
    from capandex.marketdata import ensure_chunk

    _, pages = ensure_chunk(client, span, start_ms, store=store)
    return pages


def load_candles(span: CandleRange, plans: list[ChunkPlan], store: BlobStore,
                 client: ExchangeClient | None = None, *, progress: Progress | None = None) -> FetchedCandles:
    """Seam 3: the range's candles from its plan (chunks read at planning are not read again).
    With a ``client``, chunks still missing are fetched and stored on the way; without one the
    store must hold them all (:class:`RuntimeError` otherwise — fetch them with seam 2 first).

    Raises:
        ValidationFailed: the exchange has no candle at all in the range (422 naming
            ``startDate``); a backtest over nothing would be a confusing empty result.
    """
    from capandex.marketdata import load

    candles = load(span, plans, store=store, client=client, progress=progress)
    if not len(candles):
        raise ValidationFailed(f"{span.exchange} has no {span.timeframe} candles for {span.symbol} in that range.",
                               details=[field_problem("startDate", "no candles between startDate and endDate")])
    return candles


def run(flow: Mapping[str, Any] | Flow | CompiledFlow, candles: Any, *, capital: float | None = None,
        fee: float | None = None, slippage: float | None = None) -> BacktestResult:
    """Seam 4: :func:`capandex.engine.backtest` (a document is validated here; pass a validated
    :class:`Flow` or :class:`CompiledFlow` to skip that), with the exchange's gaps in the range
    added to ``warnings`` when ``candles`` came from market data. ``capital``/``fee``/``slippage``
    None take the flow's settings (the API's way); no I/O, so call it as often as you like.

    Raises:
        ValidationFailed: the flow, the candles or the settings break a rule.
    """
    from capandex.engine import backtest

    result = backtest(flow, candles, capital=capital, fee=fee, slippage=slippage)
    result.warnings.extend(gap_warnings(candles))
    return result


def gap_warnings(candles: Any) -> list[str]:
    """One warning saying where the exchange has no candles (:attr:`FetchedCandles.gaps`), if any."""
    gaps = getattr(candles, "gaps", ())
    if not gaps:
        return []
    exchange = candles.exchange or "the exchange"
    missing = sum(g.missing for g in gaps)
    first = gaps[0].to_dict()
    return [f"{exchange} has no candles for {missing} periods of the range ({len(gaps)} gaps, the first from "
            f"{first['start']} to {first['end']}); the backtest ran over the candles that exist."]


def store_result(store: BlobStore, key: str, result: BacktestResult) -> dict[str, Any]:
    """Seam 5: write the API's view of ``result`` (metrics, the first
    :data:`~capandex.engine.LISTED_TRADES` trades, the downsampled equity curve, warnings) to
    ``key``, and next to it the equity at every candle (``equity.npy``) and every trade as
    fixed-width records (:data:`TRADES_FILE`, paged by ``GET …/trades``). Returns the body written
    (strict JSON: a NaN raises instead of being stored)."""
    from capandex.engine import API_EQUITY_POINTS, LISTED_TRADES

    body = result.to_dict(API_EQUITY_POINTS, LISTED_TRADES)
    body.setdefault("warnings", [])
    store.put(key, json.dumps(body, allow_nan=False, separators=(",", ":")).encode(), "application/json")
    store.put(beside(key, "equity.npy"), _npy(result.equity))
    store.put(beside(key, TRADES_FILE), result.table.to_records().tobytes())
    return body


#: a stored result's trades, :data:`capandex.engine.result.TRADE_RECORD` after each other
TRADES_FILE = "trades.bin"


def beside(key: str, name: str) -> str:
    """The key of ``name`` in the folder of a result's ``key`` (``…/result.json`` → ``…/trades.bin``)."""
    return key.rsplit("/", 1)[0] + "/" + name


def _npy(values: Any) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float64))
    return buffer.getvalue()
