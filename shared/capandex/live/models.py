"""Request and response models of the live engine's routes (engine, dashboard, performance)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from capandex.models import RequestModel, ResponseModel, schema_examples
from capandex.timeutil import utcnow


class StartRequest(RequestModel):
    """``replayFrom`` (paper only, beyond the reference): start as if at that past instant, so
    the ticks replay what the flow would have done since then. A replay is driven only by
    ``capandex tick --at`` (candle by candle, or up to ``CAPANDEX_LIVE_MAX_CATCHUP`` candles per
    pass, oldest first: a longer replay takes several passes); the scheduled passes on the real
    clock leave it alone. When the candle store holds
    the replay's candles (``capandex candles import``) the exchange is not asked at all."""

    model_config = ConfigDict(json_schema_extra=schema_examples(
        lambda: {"flowId": "flow_0b4c2a9e5d1f4f6aa3c8e2b7d9f01234", "mode": "paper"},
        lambda: {"flowId": "flow_0b4c2a9e5d1f4f6aa3c8e2b7d9f01234", "mode": "live",
                 "exchangeKeyId": "key_6d1e0f9a2b3c4d5e8f7a6b5c4d3e2f10"}))

    flowId: str = Field(min_length=1, max_length=64)
    mode: Literal["paper", "live"] = "paper"
    exchangeKeyId: str | None = Field(default=None, max_length=64)
    replayFrom: dt.datetime | None = None

    @field_validator("replayFrom")
    @classmethod
    def _in_the_past(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        if value >= utcnow():
            raise ValueError("must be in the past")
        return value


class StopRequest(RequestModel):
    """An open position stays open on a stop (a live one in the exchange account, a paper one
    marked at its last close) unless ``closePosition`` (paper only) sells it at the last close first."""

    model_config = ConfigDict(json_schema_extra=schema_examples(
        lambda: {"executionId": "exec_5a6b7c8d9e0f41a2b3c4d5e6f7a8b9c0", "closePosition": True}))

    executionId: str = Field(min_length=1, max_length=64)
    closePosition: bool = Field(default=False, description="paper: sell the open position at the last close")


class Started(ResponseModel):
    executionId: str
    status: str
    mode: str
    startedAt: str


class ParitySummary(ResponseModel):
    """The backtest beside the real fills, summed (``capandex.live.parity``): trades matched by
    signal candle, missing (backtest only) or extra (real only); pnl and fees in quote currency;
    mean slippages as fractions (positive: worse than the backtest); ``trackingError`` the root
    mean square of real − backtest pnl per trade (quote), also as a percent of the capital."""

    asOf: str | None = Field(description="the last candle the report covers")
    matched: int
    missing: int
    skippedEntries: int = Field(0, description="missing trades whose buy was not placed because its signal was "
                                                "processed too late (reason stale_signal)")
    extra: int
    backtestPnl: float
    realPnl: float
    backtestFees: float
    realFees: float
    meanEntrySlippage: float | None
    meanExitSlippage: float | None
    trackingError: float
    trackingErrorPercent: float


class ExecutionStatus(ResponseModel):
    executionId: str
    flowId: str
    status: str
    mode: str
    startedAt: str
    stoppedAt: str | None
    currentTick: int
    pnl: float
    pnlPercent: float
    openPositions: int
    totalTrades: int
    errorCount: int
    lastError: str | None
    lagCandles: int = Field(description="closed candles not processed yet (0 or 1 while on time; 0 for a "
                                        "replay, which has no clock of its own); see CAPANDEX_LIVE_MAX_CATCHUP")
    replay: bool = Field(default=False, description="a paper replay of the past (started with replayFrom): "
                                                    "only `capandex tick --at` advances it")
    lastCandle: str | None = Field(default=None, description="open time (ISO 8601, UTC) of the last candle it "
                                                             "has accounted for: at the start, the last closed "
                                                             "before it (a replay: before replayFrom); each tick "
                                                             "moves it on. Where a replay stands")
    parity: ParitySummary | None = Field(default=None, description="the summary of the latest parity report "
                                                                   "(GET /api/engine/parity); null before one")


class ParityTradeSide(ResponseModel):
    """One side of a trade; exit fields are null while it is open."""

    entryTime: str
    entryPrice: float
    units: float
    fees: float
    pnl: float | None
    exitTime: str | None
    exitPrice: float | None
    exitReason: str | None
    note: str | None = None


class ParityTrade(ResponseModel):
    signalCandle: str = Field(description="open time of the candle whose close decided the entry")
    status: Literal["matched", "missing", "extra"]
    backtest: ParityTradeSide | None
    real: ParityTradeSide | None
    entrySlippage: float | None = Field(description="real entry / backtest entry - 1")
    exitSlippage: float | None = Field(description="1 - real exit / backtest exit")
    pnlDifference: float | None = Field(description="real pnl - backtest pnl, once both are closed")
    reason: Literal["stale_signal", "rejected"] | None = Field(
        None, description="why a missing trade's buy was not placed: its signal was processed too late to open a "
                          "position (stale_signal), or the exchange refused it (rejected)")


class ParityReport(ResponseModel):
    executionId: str
    mode: str
    timeframe: str
    from_: str | None = Field(alias="from", description="the first candle the execution processed")
    to: str | None
    summary: ParitySummary
    trades: list[ParityTrade] = Field(description="the most recent ones (limit); the summary counts all")
    truncated: bool


class FlowRow(ResponseModel):
    id: str
    name: str
    status: str
    symbol: str | None
    exchange: str | None
    pnl: float
    pnlPct: float
    tradeCount: int
    winRate: float
    errorCount: int
    openPositions: int
    executionId: str | None


class Aggregate(ResponseModel):
    totalPnl: float
    totalPnlPct: float
    totalTrades: int
    runningFlows: int
    errorFlows: int
    totalOpenPositions: int


class MultiFlow(ResponseModel):
    flows: list[FlowRow]
    aggregate: Aggregate


class PerformancePoint(ResponseModel):
    """Realised equity after a closed trade (the first point is the initial capital)."""

    timestamp: int = Field(description="epoch milliseconds (UTC), as the API reference's performance example")
    equity: float = Field(description="quote currency")


class Performance(ResponseModel):
    totalTrades: int
    winRate: float
    pnl: float
    pnlPercent: float
    maxDrawdown: float
    maxDrawdownPercent: float
    sharpeRatio: float
    profitFactor: float | None
    equityCurve: list[PerformancePoint]


class WebhookUrl(ResponseModel):
    url: str
    token: str


class WebhookCall(RequestModel):
    """A webhook body as JSON (it may also be empty, or the plain text ``buy`` or ``sell``, as a
    TradingView alert sends it). Without an action the call toggles: flat → buy, long → sell."""

    model_config = ConfigDict(extra="allow")  # alert templates carry their own keys; they are ignored

    action: Literal["buy", "sell"] | None = None
    id: str | int | None = Field(default=None, description="the caller's call id: the same id fires once")


class WebhookFired(ResponseModel):
    accepted: bool
    duplicate: bool
    executionId: str
    orders: list[dict[str, Any]]
