"""Request and response models of ``/api/engine/optimize…``.

The research fields (``space``, ``objective``, ``constraints``, ``method``, ``trials``, ``seed``,
``walkForward``, ``monteCarlo``) are checked against the flow by
:func:`capandex.research.request.parse_request`, which reports every problem at once; the models
here give their shapes to OpenAPI and refuse unknown keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from capandex.backtests.models import ID_PATTERN
from capandex.models import RequestModel, ResponseModel


class OptimizeCreate(RequestModel):
    flowId: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN, description="The flow to optimise")
    exchange: str = Field(min_length=1, max_length=32, description="Exchange to source data from")
    symbol: str = Field(min_length=1, max_length=64, description="Trading pair, e.g. BTC/USDT")
    timeframe: Literal["1m", "5m", "15m", "1h", "4h", "1d"] = Field(description="Candle timeframe")
    startDate: str = Field(min_length=1, max_length=40, description="ISO 8601 start (inclusive), UTC unless "
                                                                    "an offset is given")
    endDate: str = Field(min_length=1, max_length=40, description="ISO 8601 end (exclusive), not in the future")
    space: dict[str, Any] = Field(description='Parameters as "NODE_ID.FIELD": {"values": [...]} or {"min", "max", '
                                              '"step"} (inclusive), and optionally "where": ["a.period < '
                                              'b.period"]; at most 100,000 combinations',
                                  json_schema_extra={"example": {"fast.period": {"min": 5, "max": 50, "step": 5},
                                                                 "slow.period": {"values": [50, 100, 200]},
                                                                 "where": ["fast.period < slow.period"]}})
    objective: str | None = Field(None, max_length=32, description="A metric name (default sharpeRatio); "
                                                                   "drawdowns and losingTrades are minimised")
    constraints: dict[str, Any] | None = Field(None, description='{"minTrades": N, "maxDrawdownPercent": P}')
    method: str | None = Field(None, max_length=8, description="grid (default), random or tpe")
    trials: int | None = Field(None, description="Parameter sets for random/tpe (default 100); grid ignores it")
    seed: int | None = Field(None, description="Seed of random/tpe and Monte Carlo (default 0)")
    walkForward: dict[str, Any] | None = Field(None, description='{"train": "90d", "test": "30d", "anchored": false}')
    monteCarlo: dict[str, Any] | None = Field(None, description='{"resamples": 1000}')

    def research_request(self) -> dict[str, Any]:
        """The fields :func:`~capandex.research.request.parse_request` checks (unset ones left out)."""
        names = ("space", "objective", "constraints", "method", "trials", "seed", "walkForward", "monteCarlo")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class OptimizationPublic(ResponseModel):
    """An optimisation: while ``running`` its progress (trials evaluated of the total); once
    ``completed`` the result — the winner (``best``: parameters and metrics, null when no trial
    satisfies the constraints), the ``top`` trials, ``walkForward``, ``robustness`` (cost stress,
    Monte Carlo) and ``overfitting`` (PBO, Deflated Sharpe Ratio); the whole trial table is at
    ``GET /api/engine/optimize/{optimizationId}/trials``. ``failed`` carries ``error``."""

    optimizationId: str
    status: Literal["running", "completed", "failed", "cancelled"]
    progress: float = Field(description="percent of the trials evaluated, 0-100")
    trialsDone: int
    trialsTotal: int
    error: str | None = None
    method: str | None = None
    objective: str | None = None
    constraints: dict[str, Any] | None = None
    evaluated: int | None = None
    refused: int | None = None
    feasible: int | None = None
    best: dict[str, Any] | None = None
    top: list[dict[str, Any]] | None = None
    walkForward: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    overfitting: dict[str, Any] | None = None
    note: str | None = None
    warnings: list[str] | None = None


class TrialsPublic(ResponseModel):
    """A page of the whole-range trial table, in trial order."""

    trials: list[dict[str, Any]]
    total: int
    offset: int


class ApplyWinner(RequestModel):
    trial: int | None = Field(None, ge=0, description="Apply this trial (its number in the table) instead of the "
                                                      "winner")


class AppliedPublic(ResponseModel):
    """The flow now holds the applied parameters; ``version`` is the new version saved with them
    (the state before was saved as the version before it)."""

    flowId: str
    versionId: str
    version: int
    params: dict[str, Any]
