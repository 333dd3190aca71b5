"""Fetch any range of candles through the chunk store (DESIGN: candles in S3 or a local directory).

:func:`fetch_candles` plans the fixed chunks covering a range (:mod:`capandex.marketdata.chunks`),
takes what the store already has, fetches the rest page by page at the exchange's own maximum
page size, and returns only closed candles, sorted and de-duplicated, with the gaps the exchange
has (reported, never filled in). The Step Functions tasks and the in-process path call the same
three steps: :func:`plan`, :func:`ensure_chunk`, :func:`assemble`.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from capandex.engine.candles import Candles
from capandex.marketdata.chunks import (
    Chunk,
    chunk_key,
    chunk_span_ms,
    chunk_starts,
    closed_until,
    decode,
    encode,
    timeframe_ms,
)
from capandex.marketdata.store import BlobStore, get_store

if TYPE_CHECKING:
    import numpy as np

    from capandex.exchanges import ExchangeClient

#: ``progress(done, total)``: candle slots of the range handled so far, out of all of them
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Gap:
    """Open times ``[start_ms, end_ms)`` for which the exchange has no candle (``missing`` of them)."""

    start_ms: int
    end_ms: int
    missing: int

    def to_dict(self) -> dict[str, Any]:
        import numpy as np

        from capandex.engine.candles import iso_utc

        start, end = iso_utc(np.array([self.start_ms, self.end_ms]))
        return {"start": start, "end": end, "missing": self.missing}


@dataclass(frozen=True, slots=True)
class FetchedCandles(Candles):
    """:class:`Candles` plus how they were obtained: the gaps, pages fetched, chunks reused."""

    gaps: tuple[Gap, ...] = ()
    pages_fetched: int = 0
    chunks_cached: int = 0
    chunks_fetched: int = 0


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One chunk of a request: its start, what the store has (``cached``), up to where it must be
    filled (``target_ms``, the last closed candle or the chunk's end) and the pages that costs."""

    start_ms: int
    target_ms: int
    cached: Chunk | None
    pages: int

    @property
    def ready(self) -> bool:
        return self.pages == 0


def now_ms() -> int:
    return int(_time.time() * 1000)


def _load(store: BlobStore, key: str, timeframe: str) -> Chunk | None:
    data = store.get(key)
    if data is None:
        return None
    try:
        return decode(data, timeframe)
    except ValueError:  # a torn or foreign object: refetch rather than fail the request
        return None


def plan(exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int, *, page_size: int,
         store: BlobStore | None = None, now: int | None = None) -> list[ChunkPlan]:
    """The chunks covering ``[start_ms, end_ms)`` and the pages each still needs (0 = in the store)."""
    store = store or get_store()
    now = now_ms() if now is None else now
    step, bound = timeframe_ms(timeframe), closed_until(timeframe, now)
    plans = []
    for start in chunk_starts(timeframe, start_ms, min(end_ms, bound)):
        target = min(start + chunk_span_ms(timeframe), bound)
        cached = _load(store, chunk_key(exchange, symbol, timeframe, start), timeframe)
        have = cached.covered_until_ms if cached else start
        pages = 0 if have >= target else math.ceil((target - have) / step / page_size)
        plans.append(ChunkPlan(start, target, cached, pages))
    return plans


def fetch_rows(client: ExchangeClient, symbol: str, timeframe: str, since_ms: int, until_ms: int,
               on_page: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, int]:
    """Rows ``[time, o, h, l, c, v]`` with open times in ``[since_ms, until_ms)``, sorted and
    de-duplicated, and the number of pages it took.

    Pages are requested at the exchange's maximum size from the last candle seen onwards; a short
    page is not taken as the end (exchanges truncate pages), only an empty one or the bound is.
    ``on_page(from_ms, to_ms)`` reports the span of open times each page advanced over.
    """
    import numpy as np

    step, limit = timeframe_ms(timeframe), client.max_page_size(timeframe)
    cursor, pages, batches = since_ms, 0, []
    while cursor < until_ms:
        page = client.ohlcv_page(symbol, timeframe, cursor, limit, until_ms=until_ms - 1)
        pages += 1
        rows = np.asarray(page, dtype=np.float64).reshape(-1, 6)
        rows = rows[(rows[:, 0] >= cursor) & (rows[:, 0] < until_ms)]
        if not len(rows):
            break
        batches.append(rows)
        advanced = int(rows[:, 0].max()) + step
        if on_page:
            on_page(cursor, min(advanced, until_ms))
        cursor = advanced
    return _sorted_unique(np.concatenate(batches) if batches else np.zeros((0, 6))), pages


def _sorted_unique(rows: np.ndarray) -> np.ndarray:
    """Sort by time and keep the last copy of each time (a later page corrects an earlier one)."""
    import numpy as np

    if not len(rows):
        return rows
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    keep = np.r_[rows[1:, 0] != rows[:-1, 0], True]
    return rows[keep]


def ensure_chunk(client: ExchangeClient, exchange: str, symbol: str, timeframe: str, start_ms: int, *,
                 store: BlobStore | None = None, now: int | None = None, cached: Chunk | None = None,
                 on_page: Callable[[int, int], None] | None = None) -> tuple[Chunk, int]:
    """The chunk at ``start_ms`` filled up to its end or the last closed candle, and the pages
    fetched for it (0 when the store had it). Stores what it fetched; the chunk holding "now" is
    stored with ``covered_until`` at the last closed candle, never as complete."""
    import numpy as np

    store = store or get_store()
    now = now_ms() if now is None else now
    key = chunk_key(exchange, symbol, timeframe, start_ms)
    end = start_ms + chunk_span_ms(timeframe)
    target = min(end, closed_until(timeframe, now))
    cached = cached or _load(store, key, timeframe)
    have = cached.covered_until_ms if cached else start_ms
    if have >= target:
        return cached or _empty(start_ms, end, target), 0
    rows, pages = fetch_rows(client, symbol, timeframe, have, target, on_page)
    if cached is not None and len(cached):
        old = np.column_stack([cached.time.astype(np.float64), cached.open, cached.high, cached.low,
                               cached.close, cached.volume])
        rows = _sorted_unique(np.concatenate([old[old[:, 0] < have], rows]))
    chunk = Chunk(start_ms, end, target, rows[:, 0].astype(np.int64), *(np.ascontiguousarray(rows[:, i])
                                                                         for i in range(1, 6)))
    store.put(key, encode(chunk))
    return chunk, pages


def _empty(start: int, end: int, covered: int) -> Chunk:
    import numpy as np

    nothing = np.zeros(0)
    return Chunk(start, end, covered, np.zeros(0, np.int64), nothing, nothing, nothing, nothing, nothing)


def assemble(chunks: list[Chunk], timeframe: str, start_ms: int, end_ms: int, *, now: int | None = None,
             pages: int = 0, cached: int = 0) -> FetchedCandles:
    """The candles of ``[start_ms, end_ms)`` from consecutive chunks, with the gaps of that range
    (up to the last closed candle)."""
    import numpy as np

    now = now_ms() if now is None else now
    bound = min(end_ms, closed_until(timeframe, now))
    columns = []
    for name in ("time", "open", "high", "low", "close", "volume"):
        parts = [getattr(c, name) for c in chunks]
        columns.append(np.concatenate(parts) if parts else np.zeros(0, np.int64 if name == "time" else np.float64))
    time = columns[0]
    lo, hi = np.searchsorted(time, start_ms, "left"), np.searchsorted(time, bound, "left")
    columns = [np.ascontiguousarray(c[lo:hi]) for c in columns]
    gaps = find_gaps(columns[0], timeframe_ms(timeframe), start_ms, bound)
    return FetchedCandles(*columns, gaps=tuple(gaps), pages_fetched=pages, chunks_cached=cached,
                          chunks_fetched=len(chunks) - cached)


def find_gaps(time: np.ndarray, step: int, start_ms: int, end_ms: int) -> list[Gap]:
    """Runs of missing open times on the ``step`` grid within ``[start_ms, end_ms)``."""
    import numpy as np

    first = -(-start_ms // step) * step
    if end_ms <= first:
        return []
    if not len(time):
        return [Gap(first, end_ms, (end_ms - first + step - 1) // step)]
    edges = np.r_[first - step, time, -(-end_ms // step) * step]
    jumps = np.flatnonzero(np.diff(edges) > step)
    return [Gap(int(edges[i]) + step, int(edges[i + 1]), int((edges[i + 1] - edges[i]) // step) - 1)
            for i in jumps]


def fetch_candles(exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                  progress: Progress | None = None, *, store: BlobStore | None = None,
                  client: ExchangeClient | None = None, now: int | None = None) -> FetchedCandles:
    """Closed candles with open times in ``[start_ms, end_ms)`` (epoch ms, UTC).

    Chunks already in the store are not fetched again; the rest are fetched page by page at the
    exchange's maximum page size and stored. The result is sorted and de-duplicated; where the
    exchange has no candles the result has none either, and :attr:`FetchedCandles.gaps` says where.

    Args:
        exchange: an active exchange id (``binance``).
        symbol: a spot symbol (``BTC/USDT``).
        timeframe: 1m, 5m, 15m, 1h, 4h or 1d.
        progress: called as ``progress(done, total)`` in candle slots as the work advances.
        store, client, now: injected in tests; the container's store/client and the clock otherwise.

    Raises:
        BadRequest: unknown exchange, symbol or timeframe. RateLimited, UpstreamUnavailable,
        UpstreamError: the exchange failed (after retries).
    """
    from capandex.exchanges import get_client

    step = timeframe_ms(timeframe)
    client = client or get_client(exchange)
    client.market(symbol)
    store = store or get_store()
    now = now_ms() if now is None else now
    plans = plan(exchange, symbol, timeframe, start_ms, end_ms, page_size=client.max_page_size(timeframe),
                 store=store, now=now)
    total = max(0, (min(end_ms, closed_until(timeframe, now)) - start_ms) // step)
    done = 0

    def advance(from_ms: int, to_ms: int) -> None:
        """Count the slots of ``[from_ms, to_ms)`` inside the requested range."""
        nonlocal done
        slots = max(0, (min(to_ms, end_ms) - max(from_ms, start_ms)) // step)
        done = min(total, done + slots)
        if progress and slots:
            progress(done, total)

    chunks, pages, cached = [], 0, 0
    for item in plans:
        have = item.cached.covered_until_ms if item.cached else item.start_ms
        advance(item.start_ms, have)  # what the store already has
        chunk, used = ensure_chunk(client, exchange, symbol, timeframe, item.start_ms, store=store, now=now,
                                   cached=item.cached, on_page=advance)
        chunks.append(chunk)
        pages += used
        cached += used == 0
    if progress and done < total:  # trailing gaps: no page advanced over them
        done = total
        progress(done, total)
    if progress and not plans:
        progress(0, 0)
    return assemble(chunks, timeframe, start_ms, end_ms, now=now, pages=pages, cached=cached)
