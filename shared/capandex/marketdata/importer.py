"""Candles from files into the chunk store (``capandex candles import``), and what the store holds.

With candles in the store, backtests, optimisations and paper replays over that range ask nothing
of the exchange (:func:`capandex.marketdata.plan` finds them covered), so they run offline.

Accepted files (any number, each a ``.csv`` or a ``.zip`` of ``.csv`` members):

- **Binance public-data klines** — the monthly/daily files traders download (``BTCUSDT-1h-2024-01.zip``):
  12 columns, no header (futures files may carry an ``open_time,…`` header): open time, open,
  high, low, close, volume, close time, quote volume, trades, taker buy base, taker buy quote,
  ignore. Times are epoch **milliseconds**, or **microseconds** in spot files from 2025 on
  (detected per value); the close time must be ``open + interval − 1`` in the same unit, which is
  how a file of another interval is recognised.
- **A candle CSV** as ``capandex backtest --candles`` reads it: a header row, a time column
  (time, timestamp, date, datetime or an unnamed first one; ISO 8601 or epoch ms) and open, high,
  low, close, volume.

Validation reports every problem with its file and line (up to :data:`MAX_PROBLEMS`): unparsable
fields, prices that are not positive, high/low that do not bound open/close, an open time off the
timeframe's grid or a close time of another interval, rows out of order, the same time twice
(within or across files), candles that have not closed yet. Nothing is stored unless every row is
valid. Gaps (missing periods) are not errors — exchanges have outages — they are reported.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from capandex.engine.candles import FIELDS, TIME_NAMES
from capandex.errors import ValidationFailed, field_problem
from capandex.marketdata.candles import Gap, find_gaps, load_chunk, sorted_unique
from capandex.marketdata.chunks import (
    TIMEFRAME_MS,
    Chunk,
    chunk_key,
    chunk_span_ms,
    chunk_starts,
    closed_until,
    encode,
    timeframe_ms,
)
from capandex.marketdata.store import BlobStore, get_store
from capandex.timeutil import iso_utc_array, now_ms

if TYPE_CHECKING:
    import numpy as np

#: problems listed before the rest are only counted
MAX_PROBLEMS = 50
#: rows in one import (ten years of 1m candles): a bound on memory, not a format rule
MAX_ROWS = 5_300_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: open times at or above this are microseconds (1e14 ms is the year 5138)
_MICROSECONDS = 10**14
_BINANCE_HEADER = "open_time"


@dataclass
class Problems:
    """Every problem found, as ``details`` entries (``field`` = ``FILE:LINE``)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(field_problem(where, message))

    def raise_if_any(self, what: str) -> None:
        if not self.count:
            return
        more = f" (the first {MAX_PROBLEMS} are listed)" if self.count > MAX_PROBLEMS else ""
        raise ValidationFailed(f"{what}: {self.count} problem(s){more}.", details=self.items)


@dataclass(frozen=True)
class ImportResult:
    """What an import stored: rows, their span ``[first_ms, end_ms)``, the gaps inside it, chunks
    written, and the holes between it and candles the store already held (now gaps of the series)."""

    rows: int
    first_ms: int
    end_ms: int
    gaps: tuple[Gap, ...]
    chunks: int
    holes: tuple[Gap, ...] = ()


# -- reading -------------------------------------------------------------------------------------
def _sources(path: Path) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of each CSV in ``path`` (the file itself, or the members of a ZIP)."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if not members:
                raise ValidationFailed(f"{path}: the archive holds no .csv file.",
                                       details=[field_problem(str(path), "no .csv member")])
            for member in members:
                yield f"{path}:{member}", archive.read(member).decode("utf-8-sig")
    else:
        yield str(path), path.read_text(encoding="utf-8-sig")


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _parse_time(text: str) -> int | None:
    """Epoch ms from epoch ms/µs digits or ISO 8601 (naive = UTC); None when it is neither."""
    text = text.strip()
    if _is_int(text):
        value = int(text)
        return value // 1000 if value >= _MICROSECONDS else value
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
    return (stamp - _EPOCH) // timedelta(milliseconds=1)


def _layout(rows: list[list[str]]) -> tuple[str, int, dict[str, int]]:
    """The file's format, the index of its first data row, and its column indices."""
    first = [cell.strip().lower() for cell in rows[0]]
    columns = {"time": 0, **{name: i + 1 for i, name in enumerate(FIELDS)}, "close_time": 6}
    if first and _is_int(first[0]):
        return "binance", 0, columns
    if first and first[0] == _BINANCE_HEADER:
        return "binance", 1, columns
    time_col = next((first.index(n) for n in TIME_NAMES if n in first), 0 if first and first[0] == "" else None)
    return "csv", 1, {"time": -1 if time_col is None else time_col,
                      **{name: first.index(name) if name in first else -1 for name in FIELDS}}


def read_candle_file(path: str | Path, timeframe: str, problems: Problems) -> tuple[np.ndarray, list[str]]:
    """Rows ``[time_ms, o, h, l, c, v]`` of one file, and each row's ``FILE:LINE``; problems are
    added to ``problems`` (the rows of a file with problems are not to be stored)."""
    import numpy as np

    path, step = Path(path), timeframe_ms(timeframe)
    out: list[list[float]] = []
    where: list[str] = []
    try:
        sources = list(_sources(path))
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        problems.add(str(path), f"cannot read the file ({exc.__class__.__name__}: {exc})")
        return np.zeros((0, 6)), []
    for name, text in sources:
        rows = [r for r in csv.reader(io.StringIO(text))]
        numbered = [(n, r) for n, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
        if not numbered:
            problems.add(name, "empty file")
            continue
        kind, skip, cols = _layout([numbered[0][1]])
        if kind == "csv" and (missing := [c for c, i in cols.items() if i < 0]):
            problems.add(f"{name}:{numbered[0][0]}", f"missing column(s) {', '.join(missing)} (expected a "
                                                     "Binance kline file or a header with time and OHLCV)")
            continue
        width = 12 if kind == "binance" else max(cols.values()) + 1
        for number, row in numbered[skip:]:
            line = f"{name}:{number}"
            if len(row) < width:
                problems.add(line, f"expected {width} columns, got {len(row)}")
                continue
            parsed = _parse_row(row, cols, kind, step, line, problems)
            if parsed is not None:
                out.append(parsed)
                where.append(line)
            if len(out) > MAX_ROWS:
                raise ValidationFailed(f"More than {MAX_ROWS:,} candles in one import; import fewer files at once.",
                                       details=[field_problem(line, "too many rows")])
    return np.array(out, dtype=np.float64).reshape(-1, 6), where


def _parse_row(row: list[str], cols: dict[str, int], kind: str, step: int, line: str,
               problems: Problems) -> list[float] | None:
    time = _parse_time(row[cols["time"]])
    if time is None:
        problems.add(line, f"open time {row[cols['time']].strip()[:40]!r} is neither epoch ms/µs nor ISO 8601")
        return None
    values = []
    for name in FIELDS:
        try:
            values.append(float(row[cols[name]]))
        except ValueError:
            problems.add(line, f"{name} {row[cols[name]].strip()[:40]!r} is not a number")
            return None
    if kind == "binance":
        close = _parse_time(row[cols["close_time"]])
        if close is None or close != time + step - 1:
            seen = "unreadable" if close is None else _interval_name(close - time + 1)
            hint = f" (a {seen} file? then --timeframe {seen})" if seen in TIMEFRAME_MS else ""
            problems.add(line, f"close time says a {seen} candle, not {_interval_name(step)}{hint}")
            return None
    return [float(time), *values]


def _interval_name(ms: int) -> str:
    names = {v: k for k, v in TIMEFRAME_MS.items()}
    return names.get(ms) or (f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms} ms")


def validate_rows(rows: np.ndarray, where: list[str], timeframe: str, problems: Problems, *,
                  now: int | None = None) -> None:
    """Row rules that need the numbers: prices, the grid, order, duplicates, closed candles."""
    import numpy as np

    step = timeframe_ms(timeframe)
    time, o, h, lo, c, v = rows.T
    checks = [
        (~np.isfinite(rows[:, 1:]).all(axis=1), "a price or the volume is NaN or infinite"),
        ((rows[:, 1:5] <= 0).any(axis=1), "a price is not positive"),
        (v < 0, "volume is negative"),
        ((h < np.maximum(o, c)) | (h < lo), "high is below open, close or low"),
        (lo > np.minimum(o, c), "low is above open or close"),
        (time % step != 0, f"open time is not on the {timeframe} grid (wrong --timeframe?)"),
        (time + step > closed_until(timeframe, now_ms() if now is None else now), "the candle has not closed yet"),
    ]
    for bad, message in checks:
        for i in np.flatnonzero(bad):
            problems.add(where[i], message)


def check_order(rows: np.ndarray, where: list[str], problems: Problems) -> None:
    """Within a file rows must be sorted; no time may appear twice in the whole import."""
    import numpy as np

    if len(rows) < 2:
        return
    by_file = [w.rsplit(":", 1)[0] for w in where]
    for i in np.flatnonzero(np.diff(rows[:, 0]) < 0):
        if by_file[i] == by_file[i + 1]:
            problems.add(where[i + 1], f"open time is earlier than line {where[i].rsplit(':', 1)[1]} "
                                       "(rows must be sorted by time)")
    order = np.argsort(rows[:, 0], kind="stable")
    same = np.flatnonzero(np.diff(rows[order, 0]) == 0)
    for i in same:
        problems.add(where[order[i + 1]], f"open time duplicates {where[order[i]]}")


def read_files(paths: list[str | Path], timeframe: str, *, now: int | None = None) -> np.ndarray:
    """Every row of ``paths``, validated, sorted by time; :class:`ValidationFailed` listing every
    problem (``details``: ``{"field": "FILE:LINE", "message"}``) otherwise."""
    import numpy as np

    problems = Problems()
    parts, where = [], []
    for path in paths:
        rows, lines = read_candle_file(path, timeframe, problems)
        parts.append(rows)
        where += lines
    rows = np.concatenate(parts) if parts else np.zeros((0, 6))
    validate_rows(rows, where, timeframe, problems, now=now)
    check_order(rows, where, problems)
    if not problems.count and not len(rows):
        problems.add(", ".join(map(str, paths)), "no candles in the file(s)")
    problems.raise_if_any("The candle files were not imported")
    return rows[np.argsort(rows[:, 0], kind="stable")]


# -- storing -------------------------------------------------------------------------------------
def store_rows(exchange: str, symbol: str, timeframe: str, rows: np.ndarray, *,
               store: BlobStore | None = None) -> ImportResult:
    """Write validated, sorted rows into the chunk store.

    The import is authoritative for ``[first candle, last candle + timeframe)``: inside it, its
    candles replace whatever the store had; what the store had outside it is kept. A chunk holds
    one covered span, so stored candles separated from the import by a hole join it across the
    hole, which then counts as a gap (:attr:`ImportResult.holes`; importing the candles of the hole
    fills it). Dropping them instead would lose candles a user imported, without a word.
    """
    import numpy as np

    store = store or get_store()
    step = timeframe_ms(timeframe)
    first, end = int(rows[0, 0]), int(rows[-1, 0]) + step
    written, holes = 0, []
    for start in chunk_starts(timeframe, first, end):
        chunk_end = start + chunk_span_ms(timeframe)
        lo, hi = max(first, start), min(end, chunk_end)
        part = rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)]
        key = chunk_key(exchange, symbol, timeframe, start)
        existing = load_chunk(store, key, timeframe)
        touching = existing is not None and existing.covered_from <= hi and lo <= existing.covered_until_ms
        if existing is not None and (touching or len(existing.time)):
            old = existing.rows()
            holes += [Gap(a, b, (b - a) // step) for a, b in ((existing.covered_until_ms, lo),
                                                             (hi, existing.covered_from)) if a < b]
            part = sorted_unique(np.concatenate([old[(old[:, 0] < lo) | (old[:, 0] >= hi)], part]))
            lo, hi = min(lo, existing.covered_from), max(hi, existing.covered_until_ms)
        chunk = Chunk.from_rows(start, chunk_end, hi, part, covered_from_ms=lo)
        store.put(key, encode(chunk))
        written += 1
    gaps = find_gaps(rows[:, 0].astype(np.int64), step, first, end)
    return ImportResult(rows=len(rows), first_ms=first, end_ms=end, gaps=tuple(gaps), chunks=written,
                        holes=tuple(sorted(holes, key=lambda g: g.start_ms)))


def import_files(paths: list[str | Path], exchange: str, symbol: str, timeframe: str, *,
                 store: BlobStore | None = None, now: int | None = None) -> ImportResult:
    """Validate ``paths`` and store their candles as ``exchange``'s ``symbol`` at ``timeframe``."""
    timeframe_ms(timeframe)  # BadRequest naming the valid ones before any file is read
    _check_symbol(symbol)
    rows = read_files(paths, timeframe, now=now)
    return store_rows(exchange, symbol, timeframe, rows, store=store)


def _check_symbol(symbol: str) -> None:
    base, slash, quote = symbol.partition("/")
    if not (slash and base and quote and base.isalnum() and quote.isalnum()):
        raise ValidationFailed(f"symbol must look like BTC/USDT, not {symbol[:40]!r}.",
                               details=[field_problem("symbol", "BASE/QUOTE, e.g. BTC/USDT")])


# -- listing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredSeries:
    """One (exchange, symbol, timeframe) in the store: its candles' span, count and gaps."""

    exchange: str
    symbol: str
    timeframe: str
    candles: int
    first_ms: int
    last_ms: int
    gaps: tuple[Gap, ...]

    def to_dict(self) -> dict[str, Any]:
        first, last = iso_utc_array([self.first_ms, self.last_ms])
        return {"exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe,
                "candles": self.candles, "first": first, "last": last,
                "gaps": [g.to_dict() for g in self.gaps], "missing": sum(g.missing for g in self.gaps)}


def list_series(store: Any | None = None) -> list[StoredSeries]:
    """Every series in the local store (``CAPANDEX_DATA_DIR/store``), sorted."""
    import numpy as np

    from capandex.marketdata.chunks import decode

    store = store or get_store()
    root = getattr(store, "root", None)
    if root is None:
        raise ValidationFailed("Listing candles needs the local store (CAPANDEX_DATA_BUCKET is set).")
    series = []
    base = Path(root) / "candles" / "v1"
    for folder in sorted(p for p in base.glob("*/*/*") if p.is_dir()) if base.is_dir() else []:
        timeframe = folder.name
        if timeframe not in TIMEFRAME_MS:
            continue
        chunks = [decode(p.read_bytes(), timeframe) for p in sorted(folder.glob("*.cdx"), key=lambda p: int(p.stem))]
        time = np.concatenate([c.time for c in chunks]) if chunks else np.zeros(0, np.int64)
        if not len(time):
            continue
        step = timeframe_ms(timeframe)
        # every missing candle between the first and the last: periods the exchange had none, and
        # stretches never imported or fetched (two imports months apart leave a hole between them)
        gaps = find_gaps(time, step, int(time[0]), int(time[-1]) + step)
        symbol = unquote(folder.parent.name).replace("_", "/")
        series.append(StoredSeries(exchange=folder.parent.parent.name, symbol=symbol, timeframe=timeframe,
                                   candles=len(time), first_ms=int(time[0]), last_ms=int(time[-1]),
                                   gaps=tuple(gaps)))
    return series
