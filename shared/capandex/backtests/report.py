"""``GET /api/engine/backtest/{backtestId}/report``: a completed backtest as the interactive report.

The report is drawn once, from the run itself, then kept: the backtest's flow snapshot runs again
(the engine is pure) on its candles, read from the store alone — the run put them there — so the
page shows exactly what the result says, with every candle and indicator value, never a
downsampled curve of a downsampled curve. Drawing a year of 1m candles takes ~3 s of CPU, so the
page is stored next to the result (``report.html.gz``, gzip: a 5.8 MB page is ~1.6 MB) and every
later request serves those bytes; drawings themselves are rate-limited per user
(:data:`capandex.ratelimit.REPORT`), so neither repeated requests nor many backtests can turn the
report into a CPU pump. A completed backtest never changes, so a stored page never goes stale.
It is served by its own function (``functions/report``): Bokeh does not fit in the shared layer
next to ccxt (README, design notes: "The report is a function of its own").
"""

from __future__ import annotations

import gzip
import logging
import uuid
from typing import TYPE_CHECKING, Any

from capandex.backtests import jobs
from capandex.backtests import repository as repo
from capandex.db.session import transaction
from capandex.errors import Conflict

if TYPE_CHECKING:
    from capandex.marketdata import BlobStore

logger = logging.getLogger("capandex.backtests")


def report_key(user_id: uuid.UUID, backtest_id: str) -> str:
    """Where the drawn page is kept (gzip), beside the backtest's request and result."""
    return f"backtests/{user_id}/{backtest_id}/report.html.gz"


def backtest_report(user_id: uuid.UUID, backtest_id: str, *, store: BlobStore | None = None) -> str:
    """The report of a completed backtest as HTML: the stored page, or drawn (and stored) now.

    Raises:
        NotFound: no such backtest for this user.
        Conflict: it is still running or failed, or its candles are no longer in the store.
        RateLimited: the page is not drawn yet and the user has drawn too many lately (429).
    """
    from capandex.marketdata import get_store
    from capandex.ratelimit import REPORT, consume

    store = store or get_store()
    with transaction(user_id) as conn:
        row = repo.get(conn, user_id=user_id, backtest_id=backtest_id)
    if row.status != repo.COMPLETED:
        raise Conflict(f"The backtest is {row.status}; its report exists once it has completed.")
    key = report_key(user_id, backtest_id)
    stored = store.get(key)
    if stored is not None:
        return gzip.decompress(stored).decode("utf-8")
    consume(REPORT, user_id=user_id)  # before any work: a drawing costs seconds of CPU
    page = _draw(row, user_id, backtest_id, store)
    try:
        store.put(key, gzip.compress(page.encode("utf-8"), 6), "application/gzip")
    except Exception:  # the page is drawn: serve it; the next request draws it again (rate-limited)
        logger.warning("could not keep the report of %s", backtest_id, exc_info=True)
    return page


def _draw(row: Any, user_id: uuid.UUID, backtest_id: str, store: BlobStore) -> str:
    from capandex.backtests import core
    from capandex.marketdata import load, plan
    from capandex.report import render_report

    span = jobs.span_of(row)
    plans = plan(span, page_size=1, store=store)  # the page size only prices fetches; none are made
    if not all(p.ready for p in plans):
        raise Conflict("The backtest's candles are no longer in the store; run the backtest again.")
    candles = load(span, plans, store=store)
    flow = jobs.read_snapshot(store, user_id, backtest_id)["flow"]
    result = core.run(flow, candles)
    return render_report(result, candles, flow, exchange=row.exchange, symbol=row.symbol, timeframe=row.timeframe)
