"""What a backtest report shows, computed once for both renderers (Bokeh HTML and matplotlib PNG).

:func:`report_data` turns a :class:`~capandex.engine.BacktestResult`, its candles and its flow into
plain arrays: candles downsampled to at most :data:`MAX_BARS` (a year of 1m candles becomes
~5,000 bars of ~105 minutes: OHLC of each bucket, volume summed, equity and indicators at the
bucket's close, drawdown at its deepest), the flow's indicators split into price overlays and
oscillator panes, equity against buy-and-hold, and the metrics and trades formatted for people
(percentages as ``19.72 %``, money with thousands separators).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from capandex.engine import BacktestResult, Candles

#: bars drawn at most; more candles are bucketed (each bucket one bar)
MAX_BARS = 5000
#: indicators drawn on the price pane (their values are prices); the rest get their own pane
OVERLAY_KINDS = frozenset({"sma", "ema", "wma", "bollinger", "vwap", "highest", "lowest"})
#: seed metric → (label, format)
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "pnl": ("Profit", "money"), "pnlPercent": ("Return", "percent"), "winRate": ("Win rate", "fraction"),
    "maxDrawdown": ("Max drawdown", "money"), "maxDrawdownPercent": ("Max drawdown %", "percent"),
    "sharpeRatio": ("Sharpe ratio", "ratio"), "profitFactor": ("Profit factor", "ratio"),
    "totalTrades": ("Trades", "count"), "winningTrades": ("Winning trades", "count"),
    "losingTrades": ("Losing trades", "count"), "sortinoRatio": ("Sortino ratio", "ratio"),
    "calmarRatio": ("Calmar ratio", "ratio"),
}


@dataclass(frozen=True)
class Series:
    """One line of an indicator: its label and values (NaN during the warm-up)."""

    label: str
    values: np.ndarray


@dataclass(frozen=True)
class Pane:
    """An oscillator pane (RSI, MACD, …): its title and lines."""

    title: str
    lines: list[Series]


@dataclass(frozen=True)
class ReportData:
    """Everything a report draws; arrays share the downsampled bar axis ``time`` (epoch ms)."""

    title: str
    subtitle: str
    time: np.ndarray
    width_ms: float
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    equity: np.ndarray
    buy_and_hold: np.ndarray
    drawdown: np.ndarray  # percent, positive
    overlays: list[Series]
    panes: list[Pane]
    trades: list[dict[str, Any]]  # raw §5 values plus formatted ones (see :func:`_trade_rows`)
    metrics: list[tuple[str, str]]  # (label, formatted value)
    bucket: int  # candles per bar (1 = not downsampled)
    warnings: list[str] = field(default_factory=list)


def report_data(result: BacktestResult, candles: Candles, flow: Any, *, exchange: str = "", symbol: str = "",
                timeframe: str = "", max_bars: int = MAX_BARS) -> ReportData:
    """The report's content. ``flow`` is the document or compiled flow that was backtested. At most
    :data:`~capandex.engine.LISTED_TRADES` trades are marked and listed (the first; a warning says
    so): every other 1m candle for a year made a 70 MB page that needed 1 GB to draw."""
    from capandex.engine import LISTED_TRADES, compile_flow

    compiled = compile_flow(flow) if not hasattr(flow, "evaluate") else flow
    values = compiled.evaluate(candles)
    n = len(candles)
    edges = _bucket_edges(n, max_bars)
    last = edges[1:] - 1
    capital = float(result.equity[0]) if n else 0.0
    hold = capital * candles.close / candles.open[0] if n else np.zeros(0)
    drawdown = (1.0 - result.equity / np.maximum.accumulate(result.equity)) * 100.0 if n else np.zeros(0)
    overlays, panes = _indicators(compiled.flow, values, last)
    name = compiled.flow.name or "Backtest"
    span = ""
    if n:
        from capandex.timeutil import iso_utc_array

        first, final = iso_utc_array([candles.time[0], candles.time[-1]])
        span = f"{first[:16].replace('T', ' ')} → {final[:16].replace('T', ' ')} UTC"
    market = " ".join(p for p in (exchange, symbol, timeframe) if p)
    return ReportData(
        title=name, subtitle=" · ".join(p for p in (market, span, f"{n:,} candles") if p),
        time=candles.time[edges[:-1]].astype(np.int64) if n else np.zeros(0, np.int64),
        width_ms=_bar_width(candles.time, edges),
        open=candles.open[edges[:-1]], high=np.maximum.reduceat(candles.high, edges[:-1]) if n else np.zeros(0),
        low=np.minimum.reduceat(candles.low, edges[:-1]) if n else np.zeros(0), close=candles.close[last],
        volume=np.add.reduceat(candles.volume, edges[:-1]) if n else np.zeros(0),
        equity=result.equity[last], buy_and_hold=hold[last],
        drawdown=np.maximum.reduceat(drawdown, edges[:-1]) if n else np.zeros(0),
        overlays=overlays, panes=panes, trades=_trade_rows(result.table.to_dicts(LISTED_TRADES)),
        metrics=format_metrics(result.metrics), bucket=int(np.ceil(n / max(1, len(last)))) if n else 1,
        warnings=list(result.warnings) + _listed(len(result.table)))


def _listed(trades: int) -> list[str]:
    """A warning when the page marks and lists fewer trades than the run made."""
    from capandex.engine import LISTED_TRADES

    if trades <= LISTED_TRADES:
        return []
    return [f"{trades:,} trades: the first {LISTED_TRADES:,} are marked and listed (the metrics count all)."]


def _bucket_edges(n: int, max_bars: int) -> np.ndarray:
    """Start indices of the buckets plus ``n``: every candle its own bar up to ``max_bars``."""
    if n <= max_bars:
        return np.arange(n + 1)
    size = int(np.ceil(n / max_bars))
    return np.append(np.arange(0, n, size), n)


def _bar_width(time: np.ndarray, edges: np.ndarray) -> float:
    """Bar width in ms: 80 % of the typical spacing of the bars' open times."""
    if len(edges) < 3:
        return 60_000.0
    return float(np.median(np.diff(time[edges[:-1]]))) * 0.8


def _indicators(flow: Any, values: dict[tuple[str, str], np.ndarray], last: np.ndarray,
                ) -> tuple[list[Series], list[Pane]]:
    overlays: list[Series] = []
    panes: list[Pane] = []
    for node_id in flow.order:
        node = flow.nodes[node_id]
        if node.type != "indicator":
            continue
        params = ", ".join(f"{v:g}" for k, v in node.params.items() if isinstance(v, int | float) and k != "source")
        label = f"{node.kind.upper()}({params})" if params else node.kind.upper()
        lines = [Series(label if handle == "value" else f"{label} {handle}", array[last])
                 for (source, handle), array in values.items() if source == node_id]
        if node.kind in OVERLAY_KINDS:
            overlays += lines
        else:
            panes.append(Pane(label, lines))
    return overlays, panes


def format_value(value: Any, kind: str) -> str:
    """A metric for people: ``money`` 1,234.56; ``percent`` 12.50 %; ``fraction`` (0..1) as percent."""
    if value is None:
        return "n/a"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "percent":
        return f"{value:,.2f} %"
    if kind == "fraction":
        return f"{value * 100:.2f} %"
    return f"{value:,.3f}" if isinstance(value, float) else str(value)


def format_metrics(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, formatted)`` for every metric, the seed's first (unknown ones keep their key)."""
    out = []
    for key, value in metrics.items():
        label, kind = METRIC_LABELS.get(key, (key, "ratio"))
        if key == "profitFactor" and value is None:
            out.append((label, "n/a (no losing trade)"))
        else:
            out.append((label, format_value(value, kind)))
    return out


def _trade_rows(trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import datetime as dt

    from capandex.timeutil import epoch_ms

    rows = []
    for number, trade in enumerate(trades, start=1):
        entry = dt.datetime.fromisoformat(trade["entryTime"].replace("Z", "+00:00"))
        exit_ = dt.datetime.fromisoformat(trade["exitTime"].replace("Z", "+00:00"))
        rows.append({**trade, "number": number, "entryMs": epoch_ms(entry), "exitMs": epoch_ms(exit_),
                     "entry": trade["entryTime"][:16].replace("T", " "),
                     "exit": trade["exitTime"][:16].replace("T", " "),
                     "pnlText": format_value(trade["pnl"], "money"),
                     "pnlPercentText": format_value(trade["pnlPercent"], "percent"),
                     "reason": trade["exitReason"].replace("_", " ")})
    return rows
