"""Backtest routes of the engine function (``/api/engine/backtest…``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from capandex.api.deps import CurrentUser, Db
from capandex.api.openapi import errors
from capandex.backtests import BacktestCreate, BacktestPublic, TradesPublic, backtest_trades, get_backtest, submit
from capandex.backtests.models import ID_PATTERN, MAX_TRADES_PAGE

BacktestId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]

router = APIRouter(prefix="/api/engine/backtest", tags=["engine"])


@router.post("", response_model=BacktestPublic,
             responses={202: {"model": BacktestPublic, "description": "Accepted: running; poll GET "
                                                                     "/api/engine/backtest/{backtestId}"},
                        **errors(404, 429, 502)})
def run_backtest(*, user: CurrentUser, body: BacktestCreate) -> JSONResponse:
    """Run a backtest: the result at once (200) when the range fits the API's time limit, else
    202 with ``status: running``; poll ``GET /api/engine/backtest/{backtestId}``."""
    # No Db dependency: the service keeps its own short transactions (none open while it works).
    submission = submit(user.id, body)
    return JSONResponse(BacktestPublic.model_validate(submission.body).model_dump(mode="json"),
                        status_code=200 if submission.completed else 202)


@router.get("/{backtestId}", response_model=BacktestPublic, responses=errors(404))
def backtest_status(*, user: CurrentUser, db: Db, backtestId: BacktestId) -> dict:
    """A backtest by id: ``running`` with ``progress`` (0–100) until ``completed`` with the metrics
    and equity curve, or ``failed`` with ``error``; poll it after a 202."""
    return get_backtest(db, user.id, backtestId)


@router.get("/{backtestId}/trades", response_model=TradesPublic, responses=errors(404, 409))
def backtest_trades_page(*, user: CurrentUser, db: Db, backtestId: BacktestId,
                         offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                         limit: Annotated[int, Query(ge=1, le=MAX_TRADES_PAGE)] = 1_000) -> dict:
    """Every closed trade of a completed backtest, in order, a page at a time (the backtest's
    result lists the first 5,000; the metrics count all)."""
    return backtest_trades(db, user.id, backtestId, offset, limit)
