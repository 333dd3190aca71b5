"""The candle container every part of Capandex shares (engine, market data, live engine).

:class:`Candles` holds one series of OHLCV bars as parallel numpy arrays: ``time`` is int64 epoch
milliseconds (the bar's open time, UTC), prices and volume are float64. It is validated once, at
the edge (:meth:`Candles.validate`), so the engine can trust it afterwards: no NaN/inf, prices > 0,
``low <= open, close <= high``, volume >= 0, strictly increasing time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from capandex.errors import ValidationFailed, field_problem
from capandex.timeutil import iso_utc_array

#: the five value columns, in the order they are stored
FIELDS = ("open", "high", "low", "close", "volume")
#: names accepted for the time column of a DataFrame or a mapping (first match wins)
TIME_NAMES = ("time", "timestamp", "date", "datetime")


@dataclass(frozen=True, slots=True)
class Candles:
    """OHLCV bars: ``time`` int64 epoch ms (bar open, UTC) and float64 ``open/high/low/close/volume``.

    Build it with :meth:`from_any` (a pandas DataFrame or a mapping of arrays) or directly from
    arrays; call :meth:`validate` before trusting data that came from outside.
    """

    time: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.time.shape[0])

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, time: Any, open: Any, high: Any, low: Any, close: Any, volume: Any,
                    ) -> Candles:
        """Coerce array-likes: ``time`` epoch ms (ints) or datetime64 of any unit; values to float64."""
        return cls(time=to_epoch_ms(time), open=_floats(open, "open"), high=_floats(high, "high"),
                   low=_floats(low, "low"), close=_floats(close, "close"),
                   volume=_floats(volume, "volume"))

    @classmethod
    def from_any(cls, data: Any) -> Candles:
        """Accept a :class:`Candles`, a pandas DataFrame or a mapping of arrays, and validate it.

        Column names are matched case-insensitively. The time comes from a column named time,
        timestamp, date or datetime, or else from a DataFrame's DatetimeIndex (or integer index of
        epoch ms). pandas is never imported here: a DataFrame is recognised by duck typing.

        Raises:
            BadRequest / ValidationFailed: a missing column or a bad value (see :meth:`validate`).
        """
        if isinstance(data, Candles):
            data.validate()
            return data
        columns = _columns_of(data)
        time = next((columns[name] for name in TIME_NAMES if name in columns), None)
        if time is None and hasattr(data, "index"):
            time = np.asarray(data.index)
        missing = [name for name in FIELDS if name not in columns]
        if time is None:
            missing.insert(0, "time")
        if missing:
            raise ValidationFailed(
                f"candles lack column(s) {', '.join(missing)}",
                details=[field_problem(name, "missing column") for name in missing])
        candles = cls.from_arrays(time, *(columns[name] for name in FIELDS))
        candles.validate()
        return candles

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ValidationFailed` naming the first bad row of every broken rule.

        Rules: at least one bar; equal lengths; finite values; open/high/low/close > 0; volume >= 0;
        high >= max(open, close, low) and low <= min(open, close); time strictly increasing (no
        duplicates). Row numbers in messages are 0-based positions in the series.
        """
        n = len(self)
        if n == 0:
            raise ValidationFailed("no candles: the period holds no data",
                                   details=[field_problem("candles", "empty")])
        if any(getattr(self, name).shape != (n,) for name in FIELDS):
            raise ValidationFailed("candle columns have different lengths",
                                   details=[field_problem("candles", "length mismatch")])
        problems = []
        for name in FIELDS:
            values = getattr(self, name)
            bad = ~np.isfinite(values)
            if bad.any():
                problems.append(_row_problem(name, bad, "is NaN or infinite"))
                continue
            bad = values < 0 if name == "volume" else values <= 0
            if bad.any():
                problems.append(_row_problem(name, bad, "must be positive" if name != "volume"
                                             else "must not be negative"))
        if not problems:
            with np.errstate(invalid="ignore"):
                bad = (self.high < np.maximum(self.open, self.close)) | (self.high < self.low) | (
                    self.low > np.minimum(self.open, self.close))
            if bad.any():
                problems.append(_row_problem("high/low", bad, "must bound open and close"))
        step = np.diff(self.time)
        if (step == 0).any():
            problems.append(_row_problem("time", np.r_[False, step == 0], "duplicates the previous row"))
        if (step < 0).any():
            problems.append(_row_problem("time", np.r_[False, step < 0], "is before the previous row"))
        if problems:
            raise ValidationFailed("; ".join(p["message"] for p in problems), details=problems)

    # -- views ----------------------------------------------------------------------------------
    def slice(self, start: int | None = None, stop: int | None = None) -> Candles:
        """Bars ``[start, stop)`` as views (no copy)."""
        window = slice(start, stop)
        return Candles(*(getattr(self, name)[window] for name in ("time", *FIELDS)))

    def iso_times(self) -> list[str]:
        """The bar times as ISO 8601 UTC strings (``2024-01-01T00:00:00Z``)."""
        return iso_utc_array(self.time)


def to_epoch_ms(values: Any) -> np.ndarray:
    """Epoch milliseconds (int64) from ints (already ms) or datetime64 / pandas timestamps.

    Timezone-aware pandas values are converted to UTC first; naive datetimes are taken as UTC.
    """
    if hasattr(values, "dt") and getattr(values.dt, "tz", None) is not None:  # tz-aware Series
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif getattr(values, "tz", None) is not None:  # tz-aware DatetimeIndex
        values = values.tz_convert("UTC").tz_localize(None)
    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ms]").astype(np.int64)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64)
    raise ValidationFailed("time must be epoch milliseconds (integers) or datetime64",
                           details=[field_problem("time", f"unsupported dtype {array.dtype}")])


def _columns_of(data: Any) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return {str(key).lower(): value for key, value in data.items()}
    if hasattr(data, "columns"):  # a pandas DataFrame, without importing pandas
        return {str(key).lower(): data[key] for key in data.columns}
    raise ValidationFailed("candles must be a pandas DataFrame or a mapping of arrays",
                           details=[field_problem("candles", f"got {type(data).__name__}")])


def _floats(values: Any, name: str) -> np.ndarray:
    try:
        return np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"{name} must be numeric",
                               details=[field_problem(name, "not numeric")]) from exc


def _row_problem(field: str, bad: np.ndarray, reason: str) -> dict[str, Any]:
    rows = np.flatnonzero(bad)
    more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
    return field_problem(field, f"row {int(rows[0])}: {field} {reason}{more}", row=int(rows[0]))
