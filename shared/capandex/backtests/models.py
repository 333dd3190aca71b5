"""Request and response models of ``/api/engine/backtest`` (the API reference's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from capandex.api.models import RequestModel, ResponseModel

#: what ids made by ``new_id`` look like; anything else (a NUL byte Postgres refuses in text) is a 422
ID_PATTERN = r"^[A-Za-z0-9_-]+$"


class BacktestCreate(RequestModel):
    flowId: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN, description="The flow to backtest")
    exchange: str = Field(min_length=1, max_length=32, description="Exchange to source data from")
    symbol: str = Field(min_length=1, max_length=64, description="Trading pair, e.g. BTC/USDT")
    timeframe: Literal["1m", "5m", "15m", "1h", "4h", "1d"] = Field(description="Candle timeframe")
    startDate: str = Field(min_length=1, max_length=40, description="ISO 8601 start (inclusive), UTC unless "
                                                                    "an offset is given")
    endDate: str = Field(min_length=1, max_length=40, description="ISO 8601 end (exclusive), not in the future")


class EquityPoint(ResponseModel):
    timestamp: str
    equity: float


class TradePublic(ResponseModel):
    entryTime: str
    exitTime: str
    entryPrice: float
    exitPrice: float
    units: float
    pnl: float
    pnlPercent: float
    fees: float
    exitReason: str


class BacktestPublic(ResponseModel):
    """A backtest: while ``running`` only the id, status and ``progress`` (percent); once
    ``completed`` the metrics, the equity curve (at most 2,000 points) and the trades; when
    ``failed`` the ``error`` saying why."""

    backtestId: str
    status: Literal["running", "completed", "failed"]
    progress: float = Field(description="percent done, 0-100")
    metrics: dict[str, Any] | None = None
    equityCurve: list[EquityPoint] | None = None
    trades: list[TradePublic] | None = None
    warnings: list[str] | None = None
    error: str | None = None
