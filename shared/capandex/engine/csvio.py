"""Read candles from a CSV file (DESIGN.md §6).

Format: a header row; a time column named time, timestamp, date or datetime (or an unnamed first
column) holding ISO 8601 (naive = UTC) or epoch milliseconds; open, high, low, close, volume in
any case. Every error names the file line (1 = the header) and the column.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from capandex.engine.candles import FIELDS, TIME_NAMES, Candles
from capandex.errors import BadRequest

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_candles_csv(path: str | Path) -> Candles:
    """Parse and validate a candle CSV.

    Raises:
        BadRequest: missing column, unparsable/unsorted/duplicate time, NaN or non-positive price,
            or an unreadable file; the message names the line and column.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not rows:
        raise BadRequest(f"{path}: empty file (expected a header row and candles)")
    header = [name.strip().lower() for name in rows[0]]
    time_col = next((header.index(n) for n in TIME_NAMES if n in header), None)
    if time_col is None and header and header[0] == "":
        time_col = 0
    missing = ([] if time_col is not None else ["time"]) + [f for f in FIELDS if f not in header]
    if missing or time_col is None:  # (no time column is in missing)
        raise BadRequest(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    cols = [header.index(f) for f in FIELDS]
    body = [(number, row) for number, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
    if not body:
        raise BadRequest(f"{path}: no candles after the header")
    times = np.empty(len(body), dtype=np.int64)
    values = np.empty((len(body), len(FIELDS)))
    for i, (number, row) in enumerate(body):
        if len(row) < len(header):
            raise BadRequest(f"{path}: line {number}: expected {len(header)} columns, got {len(row)}")
        times[i] = _parse_time(row[time_col], path, number)
        for j, col in enumerate(cols):
            values[i, j] = _parse_number(row[col], path, number, FIELDS[j])
    for j, name in enumerate(FIELDS):
        column = values[:, j]
        bad = np.flatnonzero(~np.isfinite(column) | (column < 0 if name == "volume" else column <= 0))
        if len(bad):
            what = "NaN or infinite" if not np.isfinite(column[bad[0]]) else (
                "negative" if name == "volume" else "not positive")
            raise BadRequest(f"{path}: line {body[bad[0]][0]}: {name} is {what} ({column[bad[0]]:g})")
    step = np.diff(times)
    for out_of_order, what in ((step == 0, "duplicates the previous timestamp"),
                               (step < 0, "is earlier than the previous row (rows must be sorted by time)")):
        if out_of_order.any():
            raise BadRequest(f"{path}: line {body[int(np.argmax(out_of_order)) + 1][0]}: time {what}")
    candles = Candles.from_arrays(times, *values.T)
    try:
        candles.validate()
    except Exception as exc:  # e.g. high below close: name the line, not the 0-based row
        detail = (getattr(exc, "details", None) or [{}])[0]
        row = detail.get("row")
        line = f"line {body[row][0]}: " if isinstance(row, int) else ""
        raise BadRequest(f"{path}: {line}{getattr(exc, 'message', exc)}") from exc
    return candles


def _parse_time(text: str, path: Path, number: int) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadRequest(f"{path}: line {number}: time {text!r} is neither ISO 8601 nor epoch ms") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (stamp - _EPOCH) // timedelta(milliseconds=1)


def _parse_number(text: str, path: Path, number: int, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadRequest(f"{path}: line {number}: {name} {text!r} is not a number") from None
