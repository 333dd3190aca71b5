"""Request and response models of ``/api/engine/backtest`` (the API reference's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from capandex.models import RequestModel, ResponseModel, schema_examples

#: what ids made by ``new_id`` look like; anything else (a NUL byte Postgres refuses in text) is a 422
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
#: the dates a range accepts, for the OpenAPI document (a client or a test generator produces
#: these); the service parses them itself, so a bad one is a 422 saying "not an ISO 8601 date"
DATE_FORMATS: dict[str, Any] = {
    "pattern": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$",
    "anyOf": [{"format": "date"}, {"format": "date-time"}]}


class BacktestCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: {
        "flowId": "flow_0b4c2a9e5d1f4f6aa3c8e2b7d9f01234", "exchange": "binance", "symbol": "BTC/USDT",
        "timeframe": "1h", "startDate": "2024-01-01", "endDate": "2024-02-01T00:00:00Z"}))

    flowId: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN, description="The flow to backtest")
    exchange: str = Field(min_length=1, max_length=32, description="Exchange to source data from")
    symbol: str = Field(min_length=1, max_length=64, description="Trading pair, e.g. BTC/USDT")
    timeframe: Literal["1m", "5m", "15m", "1h", "4h", "1d"] = Field(description="Candle timeframe")
    startDate: str = Field(min_length=1, max_length=40, json_schema_extra=DATE_FORMATS,
                           description="ISO 8601 start (inclusive), UTC unless an offset is given")
    endDate: str = Field(min_length=1, max_length=40, json_schema_extra=DATE_FORMATS,
                         description="ISO 8601 end (exclusive), not in the future")


class EquityPoint(ResponseModel):
    """Equity at a candle's close."""

    timestamp: str = Field(description="the candle's open time, ISO 8601 UTC (2025-01-01T00:00:00Z)")
    equity: float = Field(description="cash + units × close, quote currency")


class BacktestMetrics(ResponseModel):
    """The seed's metrics (DESIGN.md §5 defines each). Later metrics (research adds more) arrive as
    further numeric keys, so a client must tolerate keys it does not know."""

    model_config = ConfigDict(extra="allow")

    pnl: float = Field(description="final equity − initial capital, quote currency")
    pnlPercent: float = Field(description="pnl / initial capital × 100")
    winRate: float = Field(ge=0, le=1, description="winning / total trades, a fraction 0..1 (0 without trades)")
    maxDrawdown: float = Field(ge=0, description="largest fall from a running equity peak, quote currency")
    maxDrawdownPercent: float = Field(ge=0, description="largest fall from a running peak, percent of that peak")
    sharpeRatio: float = Field(description="mean / std of daily equity returns × √365 (0 when undefined)")
    profitFactor: float | None = Field(description="gross win / |gross loss|; null without a losing trade")
    totalTrades: int = Field(ge=0, description="closed trades")
    winningTrades: int = Field(ge=0, description="trades with pnl > 0")
    losingTrades: int = Field(ge=0, description="trades with pnl < 0")


class TradePublic(ResponseModel):
    """One closed trade (DESIGN.md §5): prices are fills (slippage included), pnl after both fees."""

    entryTime: str = Field(description="ISO 8601 UTC")
    exitTime: str = Field(description="ISO 8601 UTC")
    entryPrice: float
    exitPrice: float
    units: float
    pnl: float = Field(description="quote currency, after both fees")
    pnlPercent: float = Field(description="pnl / cash spent at entry × 100")
    fees: float = Field(description="entry + exit fee, quote currency")
    exitReason: Literal["signal", "stop_loss", "take_profit", "trailing_stop", "kill_switch", "end_of_data"]


class TradesPublic(ResponseModel):
    """A page of a completed backtest's closed trades, in order (all of them, where its result
    lists the first 5,000)."""

    trades: list[TradePublic]
    total: int = Field(ge=0, description="closed trades in the whole backtest")
    offset: int = Field(ge=0, description="the position of the page's first trade")


#: the most trades one page lists (~1.2 MB of JSON; Lambda answers at most 6 MB)
MAX_TRADES_PAGE = 5_000


class BacktestPublic(ResponseModel):
    """A backtest: while ``running`` only the id, status and ``progress`` (percent); once
    ``completed`` the metrics, the equity curve (at most 2,000 points) and the trades; when
    ``failed`` the ``error`` saying why."""

    backtestId: str
    status: Literal["running", "completed", "failed"]
    progress: float = Field(description="percent done, 0-100")
    metrics: BacktestMetrics | None = None
    equityCurve: list[EquityPoint] | None = None
    trades: list[TradePublic] | None = None
    warnings: list[str] | None = None
    error: str | None = None

    @model_serializer(mode="wrap")
    def _absent_rather_than_null(self, handler: SerializerFunctionWrapHandler):
        """Fields that do not apply to the status are left out (``profitFactor: null`` inside the
        metrics stays: it means "no losing trade"). No return annotation: pydantic would document
        that type instead of the fields."""
        return {key: value for key, value in handler(self).items() if value is not None}
