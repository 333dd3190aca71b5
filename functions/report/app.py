"""Report function: a completed backtest as an interactive HTML page
(``GET /api/engine/backtest/{backtestId}/report``).

Its own function because Bokeh (52 MB installed with what it needs: ``benchmarks/report.py``)
does not fit in the shared layer beside ccxt under Lambda's 250 MB ceiling; this function needs
neither ccxt nor anthropic (the candles come from the store). Bokeh is imported on the first
request, never at cold start.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from capandex.api.app import create_app, lambda_handler
from capandex.api.deps import CurrentUser
from capandex.api.openapi import errors
from capandex.backtests.models import ID_PATTERN
from capandex.report import CONTENT_SECURITY_POLICY

router = APIRouter(tags=["engine"])


@router.get("/api/engine/backtest/{backtestId}/report", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {}}, "description": "one self-contained HTML page "
                                                                          "(BokehJS inlined: works offline)"},
                       **errors(404, 409, 429)})
async def backtest_report(*, user: CurrentUser,
                          backtestId: Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]) -> HTMLResponse:
    """Candles with the flow's indicators, trades coloured by outcome, equity against buy-and-hold,
    drawdown, metrics and the trade list; pan, zoom and hover linked across panes. 409 while the
    backtest runs or after it failed; drawn once, then served as stored (drawings are rate-limited:
    429 with Retry-After). Sandboxed by its Content-Security-Policy: it runs on no origin."""
    from capandex.backtests.report import backtest_report as render

    page = await run_in_threadpool(render, user.id, backtestId)
    return HTMLResponse(page, headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Cache-Control": "private, max-age=300",
        "Content-Disposition": f'inline; filename="{backtestId}.html"'})


app = create_app("report", [router])
handler = lambda_handler(app)
