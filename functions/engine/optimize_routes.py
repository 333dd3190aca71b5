"""Optimisation routes of the engine function (``/api/engine/optimize…``): parameter research.

Thin: each route parses, calls :mod:`capandex.research.service` and returns its model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from capandex.api.deps import CurrentUser, Db
from capandex.api.openapi import errors
from capandex.backtests.models import ID_PATTERN
from capandex.research import service
from capandex.research.models import (
    AppliedPublic,
    ApplyWinner,
    OptimizationPublic,
    OptimizeCreate,
    TrialsPublic,
)

router = APIRouter(prefix="/api/engine/optimize", tags=["engine"])
OptimizationId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]


@router.post("", response_model=OptimizationPublic, status_code=status.HTTP_202_ACCEPTED,
             responses=errors(404, 429, 502))
def start_optimization(*, user: CurrentUser, body: OptimizeCreate) -> JSONResponse:
    """Start optimising a flow's parameters (grid, random or TPE), with walk-forward and robustness
    tests when asked: 202 with ``optimizationId``; poll ``GET /api/engine/optimize/{optimizationId}``.
    One running optimisation per user (429 with Retry-After)."""
    # No Db dependency: the service keeps its own short transactions.
    body_out = OptimizationPublic.model_validate(service.submit(user.id, body)).model_dump(mode="json",
                                                                                          exclude_none=True)
    return JSONResponse(body_out, status_code=status.HTTP_202_ACCEPTED)


@router.get("/{optimizationId}", response_model=OptimizationPublic, response_model_exclude_none=True,
            responses=errors(404))
def optimization_status(*, user: CurrentUser, db: Db, optimizationId: OptimizationId) -> dict:
    """``trialsDone`` of ``trialsTotal`` while it runs; then the result (best, top trials,
    walk-forward, robustness, overfitting), or ``failed`` with ``error``, or ``cancelled``."""
    return service.get(db, user.id, optimizationId)


@router.delete("/{optimizationId}", response_model=OptimizationPublic, response_model_exclude_none=True,
               responses=errors(404, 409))
def cancel_optimization(*, user: CurrentUser, optimizationId: OptimizationId) -> dict:
    """Cancel a running optimisation: no further batch is evaluated."""
    return service.cancel(user.id, optimizationId)


@router.get("/{optimizationId}/trials", response_model=TrialsPublic, responses=errors(404, 409))
def optimization_trials(*, user: CurrentUser, db: Db, optimizationId: OptimizationId,
                        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
                        limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100) -> dict:
    """Every trial of the whole range, in trial order, a page at a time."""
    return service.trials(db, user.id, optimizationId, offset, limit)


@router.post("/{optimizationId}/apply", response_model=AppliedPublic, status_code=status.HTTP_201_CREATED,
             responses=errors(404, 409))
def apply_winner(*, user: CurrentUser, optimizationId: OptimizationId, body: ApplyWinner | None = None) -> dict:
    """Apply the winner's parameters (or trial ``trial``'s) to the flow as a new version; the flow's
    state before is saved as a version first."""
    return service.apply(user.id, optimizationId, body.trial if body else None)
