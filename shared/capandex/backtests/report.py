"""``GET /api/engine/backtest/{backtestId}/report``: a completed backtest as the interactive report.

The report is rebuilt, not stored: the backtest's flow snapshot runs again (the engine is pure and
takes milliseconds) on its candles, read from the store alone — the run put them there — so the
page shows exactly what the result says, with every candle and indicator value, never a
downsampled curve of a downsampled curve. It is served by its own function (``functions/report``):
Bokeh does not fit in the shared layer next to ccxt (see README, "Backtest reports").
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from capandex.backtests import jobs
from capandex.backtests import repository as repo
from capandex.db.session import transaction
from capandex.errors import Conflict

if TYPE_CHECKING:
    from capandex.marketdata import BlobStore


def backtest_report(user_id: uuid.UUID, backtest_id: str, *, store: BlobStore | None = None) -> str:
    """The report of a completed backtest as HTML.

    Raises:
        NotFound: no such backtest for this user.
        Conflict: it is still running or failed, or its candles are no longer in the store.
    """
    from capandex.backtests import core
    from capandex.marketdata import get_store, load, plan
    from capandex.report import render_report

    store = store or get_store()
    with transaction(user_id) as conn:
        row = repo.get(conn, user_id=user_id, backtest_id=backtest_id)
    if row.status != repo.COMPLETED:
        raise Conflict(f"The backtest is {row.status}; its report exists once it has completed.")
    span = jobs.span_of(row)
    plans = plan(span, page_size=1, store=store)  # the page size only prices fetches; none are made
    if not all(p.ready for p in plans):
        raise Conflict("The backtest's candles are no longer in the store; run the backtest again.")
    candles = load(span, plans, store=store)
    flow = jobs.read_snapshot(store, user_id, backtest_id)["flow"]
    result = core.run(flow, candles)
    return render_report(result, candles, flow, exchange=row.exchange, symbol=row.symbol, timeframe=row.timeframe)
