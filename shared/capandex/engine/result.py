"""What a backtest returns: trades, metrics, the equity curve, and their JSON shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from capandex.engine.rules import REASONS
from capandex.timeutil import iso_utc_array

#: the API sends at most this many equity points (the library and CLI keep all)
API_EQUITY_POINTS = 2000
#: the API and the report list at most this many trades (the first; the metrics count all): a flow
#: trading every other 1m candle for a year has 262,800, a 70 MB body that took 7.5 s per GET and
#: is past what a Lambda function may return (6 MB)
LISTED_TRADES = 5000


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed trade. Times are epoch ms (UTC); prices are fills (slippage included); ``pnl``
    is after both fees, in quote currency; ``pnl_percent`` is pnl over the cash spent at entry."""

    entry_time: int
    exit_time: int
    entry_price: float
    exit_price: float
    units: float
    pnl: float
    pnl_percent: float
    fees: float
    exit_reason: str

    def to_dict(self) -> dict[str, Any]:
        """The §5 trade object (ISO 8601 UTC times)."""
        entry, exit_ = iso_utc_array(np.array([self.entry_time, self.exit_time]))
        return {"entryTime": entry, "exitTime": exit_, "entryPrice": self.entry_price,
                "exitPrice": self.exit_price, "units": self.units, "pnl": self.pnl,
                "pnlPercent": self.pnl_percent, "fees": self.fees, "exitReason": self.exit_reason}


def make_trade(entry_time: int, exit_time: int, entry_price: float, exit_price: float, units: float,
               spent: float, proceeds: float, fee: float, reason: int) -> Trade:
    """Build a :class:`Trade` from the raw fill numbers (shared by the simulator and the stepper)."""
    pnl = proceeds - spent
    return Trade(entry_time=int(entry_time), exit_time=int(exit_time), entry_price=float(entry_price),
                 exit_price=float(exit_price), units=float(units), pnl=float(pnl),
                 pnl_percent=float(pnl / spent * 100.0) if spent > 0 else 0.0,
                 fees=float(units * entry_price * fee + units * exit_price * fee),
                 exit_reason=REASONS[int(reason)])


#: one closed trade as a fixed-width little-endian record (72 bytes; :meth:`TradeTable.to_records`):
#: a stored backtest's trades, so that a page of them is one range read of the file
TRADE_RECORD = np.dtype([("entry_time", "<i8"), ("exit_time", "<i8"), ("entry_price", "<f8"), ("exit_price", "<f8"),
                         ("units", "<f8"), ("spent", "<f8"), ("proceeds", "<f8"), ("reason", "<i8"), ("fee", "<f8")])
_TRADE_COLUMNS = tuple(TRADE_RECORD.names or ())[:-1]  # the arrays of a TradeTable; "fee" is its one rate


@dataclass(frozen=True, slots=True)
class TradeTable:
    """Closed trades as parallel arrays (times epoch ms; money in quote currency)."""

    entry_time: npt.NDArray[np.int64]
    exit_time: npt.NDArray[np.int64]
    entry_price: npt.NDArray[np.float64]
    exit_price: npt.NDArray[np.float64]
    units: npt.NDArray[np.float64]
    spent: npt.NDArray[np.float64]
    proceeds: npt.NDArray[np.float64]
    reason: npt.NDArray[np.int64]
    fee: float

    @property
    def pnl(self) -> np.ndarray:
        """Pnl after both fees: proceeds - spent (same expression as :func:`make_trade`)."""
        return self.proceeds - self.spent

    def __len__(self) -> int:
        return len(self.entry_time)

    def to_records(self) -> np.ndarray:
        """The trades as :data:`TRADE_RECORD` records, in order."""
        records = np.empty(len(self), TRADE_RECORD)
        for name in _TRADE_COLUMNS:
            records[name] = getattr(self, name)
        records["fee"] = self.fee
        return records

    @classmethod
    def from_records(cls, records: np.ndarray) -> TradeTable:
        """The table of :data:`TRADE_RECORD` records (no record, no fee to know: 0)."""
        rate = float(records["fee"][0]) if len(records) else 0.0
        return cls(**{name: np.ascontiguousarray(records[name]) for name in _TRADE_COLUMNS}, fee=rate)

    def to_dicts(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The §5 trade dicts (the first ``limit``, or all), built column-wise (ISO times converted
        in one batch)."""
        if limit is not None and limit < len(self):
            cut = {name: getattr(self, name)[:limit] for name in _TRADE_COLUMNS}
            return TradeTable(**cut, fee=self.fee).to_dicts()
        pnl = self.pnl
        with np.errstate(invalid="ignore", divide="ignore"):
            pnl_percent = np.where(self.spent > 0, pnl / self.spent * 100.0, 0.0)
        fees = self.units * self.entry_price * self.fee + self.units * self.exit_price * self.fee
        columns = (iso_utc_array(self.entry_time), iso_utc_array(self.exit_time), self.entry_price.tolist(),
                   self.exit_price.tolist(), self.units.tolist(), pnl.tolist(), pnl_percent.tolist(),
                   fees.tolist(), [REASONS[r] for r in self.reason.tolist()])
        keys = ("entryTime", "exitTime", "entryPrice", "exitPrice", "units", "pnl", "pnlPercent", "fees",
                "exitReason")
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


@dataclass(frozen=True)
class BacktestResult:
    """The outcome of :func:`capandex.engine.backtest`.

    Attributes:
        metrics: the seed's metrics (see :func:`capandex.engine.metrics.compute_metrics`).
        equity: equity at every close, float64, one value per candle.
        time: the candles' open times, int64 epoch ms.
        table: the closed trades as arrays (:class:`TradeTable`).
        warnings: notes on odd but valid runs (e.g. fewer candles than the warm-up).
        trades: (property) the closed trades as §5 dicts with ISO 8601 UTC times, built on first use.
    """

    metrics: dict[str, Any]
    equity: np.ndarray
    time: np.ndarray
    table: TradeTable
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def trades(self) -> list[dict[str, Any]]:
        return self.table.to_dicts()

    def equity_curve(self, max_points: int | None = None) -> list[dict[str, Any]]:
        """``[{"timestamp": ISO 8601 "Z", "equity": float}]``; all points unless ``max_points``."""
        return equity_curve_points(self.time, self.equity, max_points)

    def to_dict(self, max_points: int | None = None, max_trades: int | None = None) -> dict[str, Any]:
        """``{"metrics", "trades", "equityCurve"}`` (plus ``warnings`` when there are some); all
        trades and equity points unless ``max_trades``/``max_points`` (a warning says when trades
        were left out)."""
        warnings = list(self.warnings)
        trades = self.trades if max_trades is None or len(self.table) <= max_trades else self.table.to_dicts(max_trades)
        if len(trades) < len(self.table):
            warnings.append(f"{len(self.table):,} trades: the first {len(trades):,} are listed "
                            "(the metrics count all).")
        out: dict[str, Any] = {"metrics": self.metrics, "trades": trades, "equityCurve": self.equity_curve(max_points)}
        if warnings:
            out["warnings"] = warnings
        return out

    def to_json(self, max_points: int | None = None, **kwargs: Any) -> str:
        """:meth:`to_dict` as strict JSON (``allow_nan=False``: a NaN would raise, never be sent)."""
        import json

        return json.dumps(self.to_dict(max_points), allow_nan=False, **kwargs)


def downsample_indices(equity: np.ndarray, max_points: int = API_EQUITY_POINTS) -> np.ndarray:
    """Indices of ``max_points`` equity points (all when there are fewer; never fewer than the
    first and the last), sorted, that draw the shape of the whole curve: the lowest and the highest
    point of each of at most ``max_points // 2 - 3`` equal slices (so no dip or spike disappears
    between two kept points), the first and the last point, and both deepest drawdowns with the
    peaks before them — in percent and in money, which ``maxDrawdown`` reports and which can be
    another trough; evenly spaced points fill the rest."""
    n = len(equity)
    if n <= max_points:
        return np.arange(n)
    if max_points < 8:  # too few for the extremes and a low and a high per slice: evenly spaced
        return np.unique(np.linspace(0, n - 1, max(max_points, 2)).astype(np.int64))
    peak = np.maximum.accumulate(equity)
    extremes = [0, n - 1]
    for trough in (int(np.argmax(1.0 - equity / peak)), int(np.argmax(peak - equity))):
        extremes += [trough, int(np.argmax(equity[:trough + 1]))]
    width = -(-n // (max_points // 2 - len(extremes) // 2))  # ceil, so that 2 × slices + 6 ≤ max_points
    slices = -(-n // width)
    padded = np.pad(equity, (0, slices * width - n), mode="edge").reshape(slices, width)
    starts = np.arange(slices) * width
    keep = np.unique(np.r_[extremes, np.minimum(starts + padded.argmin(axis=1), n - 1),
                           np.minimum(starts + padded.argmax(axis=1), n - 1)])
    rest = np.setdiff1d(np.arange(n), keep, assume_unique=True)
    spaced = rest[np.linspace(0, len(rest) - 1, max_points - len(keep)).astype(np.int64)]  # steps ≥ 1: distinct
    return np.union1d(keep, spaced)  # exactly max_points: spaced ones are distinct and not in keep


def equity_curve_points(time_ms: np.ndarray, equity: np.ndarray,
                        max_points: int | None = None) -> list[dict[str, Any]]:
    """The equity curve as JSON points, downsampled to ``max_points`` when given."""
    idx = np.arange(len(equity)) if max_points is None else downsample_indices(equity, max_points)
    stamps = iso_utc_array(time_ms[idx])
    return [{"timestamp": s, "equity": float(e)} for s, e in zip(stamps, equity[idx].tolist(), strict=True)]


def equity_curve_for_api(result: BacktestResult) -> list[dict[str, Any]]:
    """The API's equity curve: at most 2,000 points of the same shape (:func:`downsample_indices`)."""
    return result.equity_curve(API_EQUITY_POINTS)
