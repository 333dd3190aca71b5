"""Fetch any range of candles through the chunk store (DESIGN: candles in S3 or a local directory).

:func:`fetch_candles` plans the fixed chunks covering a range (:mod:`capandex.marketdata.chunks`),
takes what the store already has, fetches the rest page by page at the exchange's own maximum
page size, and returns only closed candles, sorted and de-duplicated, with the gaps the exchange
has (reported, never filled in). It is two steps that callers may also take apart (the backtest
core does, so each stored chunk is read and decoded once per process):

1. :func:`plan` — the chunks covering a :class:`CandleRange`, each with what the store holds and
   the pages it still needs;
2. :func:`load` — fill the planned chunks (from the exchange, only given a client) and
   :func:`assemble` the range's candles from them.

:func:`ensure_chunk` fills one chunk on its own (a Step Functions Map item).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any

from capandex.engine.candles import Candles
from capandex.errors import UpstreamUnavailable
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
from capandex.timeutil import iso_utc_array, now_ms

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
        start, end = iso_utc_array([self.start_ms, self.end_ms])
        return {"start": start, "end": end, "missing": self.missing}


class FillTimeUp(UpstreamUnavailable):
    """The range's chunks are not all in the store yet, and filling the rest would run past the
    caller's time (``fill_seconds`` of :func:`fetch_candles`): the pages fetched so far are stored
    (a chunk cut short as covered up to its last page), so the next call goes on from there."""

    code = "candles_filling"


@dataclass(frozen=True, slots=True)
class FetchedCandles(Candles):
    """:class:`Candles` plus how they were obtained: the exchange, the gaps, pages fetched, chunks reused."""

    exchange: str = ""
    gaps: tuple[Gap, ...] = ()
    pages_fetched: int = 0
    chunks_cached: int = 0
    chunks_fetched: int = 0


@dataclass(frozen=True, slots=True)
class CandleRange:
    """The closed candles of one market with open times in ``[start_ms, end_ms)`` (epoch ms, UTC),
    as they stand at ``as_of_ms``: a candle not closed and settled by then is not part of the range.
    Pinning the instant makes every step that reads the range (plan, fetch, load — possibly in
    different Lambdas minutes apart) agree on what it holds, and on which pages it needs."""

    exchange: str
    symbol: str
    timeframe: str
    start_ms: int
    end_ms: int
    as_of_ms: int

    @property
    def bound_ms(self) -> int:
        """Exclusive bound of the open times the range can hold (its end, or the last closed candle)."""
        return min(self.end_ms, closed_until(self.timeframe, self.as_of_ms))

    @property
    def slots(self) -> int:
        """Candle slots of the range up to :attr:`bound_ms` (what progress counts)."""
        return max(0, (self.bound_ms - self.start_ms) // timeframe_ms(self.timeframe))


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One chunk of a request: its start, what the store has (``cached``), up to where it must be
    filled (``target_ms``, the last closed candle or the chunk's end) and the pages that costs
    (0 when the store covers the request's part of the chunk: no exchange is asked)."""

    start_ms: int
    target_ms: int
    cached: Chunk | None
    pages: int

    @property
    def ready(self) -> bool:
        return self.pages == 0


def load_chunk(store: BlobStore, key: str, timeframe: str) -> Chunk | None:
    """The stored chunk at ``key``, or None (missing, or unreadable: it is fetched again)."""
    data = store.get(key)
    if data is None:
        return None
    try:
        return decode(data, timeframe)
    except ValueError:  # a torn or foreign object: refetch rather than fail the request
        return None


def plan(candles: CandleRange, *, page_size: int, store: BlobStore | None = None) -> list[ChunkPlan]:
    """The chunks covering the range and the pages each still needs (0 = in the store), reading
    (and decoding) each stored chunk once; :func:`load` takes the plan from there."""
    store = store or get_store()
    return [plan_chunk(candles, start, page_size=page_size, store=store)
            for start in chunk_starts(candles.timeframe, candles.start_ms, candles.bound_ms)]


def plan_chunk(candles: CandleRange, start_ms: int, *, page_size: int, store: BlobStore) -> ChunkPlan:
    """One chunk of the range: what the store holds of it, up to where it must be filled (its end
    or the last closed candle at ``as_of_ms``) and the pages that costs."""
    timeframe, step = candles.timeframe, timeframe_ms(candles.timeframe)
    target = min(start_ms + chunk_span_ms(timeframe), closed_until(timeframe, candles.as_of_ms))
    cached = load_chunk(store, chunk_key(candles.exchange, candles.symbol, timeframe, start_ms), timeframe)
    if cached is not None and cached.covers(max(candles.start_ms, start_ms), min(candles.bound_ms, target)):
        return ChunkPlan(start_ms, target, cached, 0)  # e.g. an imported range: offline
    # otherwise the whole rest of the chunk is fetched, so the next request finds it complete
    head, have = (cached.covered_from - start_ms, cached.covered_until_ms) if cached is not None else (0, start_ms)
    pages = math.ceil(head / step / page_size) + math.ceil(max(0, target - have) / step / page_size)
    return ChunkPlan(start_ms, target, cached, pages)


def fetch_rows(client: ExchangeClient, symbol: str, timeframe: str, since_ms: int, until_ms: int,
               on_page: Callable[[int, int], None] | None = None, *,
               deadline: float | None = None) -> tuple[np.ndarray, int, int]:
    """Rows ``[time, o, h, l, c, v]`` with open times in ``[since_ms, until_ms)``, sorted and
    de-duplicated, the number of pages it took, and how far they cover: ``until_ms``, or less when
    ``deadline`` (``time.monotonic()``) passed first — no page is requested after it but the first.

    Pages are requested at the exchange's maximum size from the last candle seen onwards; a short
    page is not taken as the end (exchanges truncate pages), only an empty one or the bound is.
    ``on_page(from_ms, to_ms)`` reports the span of open times each page advanced over.
    """
    import numpy as np

    step, limit = timeframe_ms(timeframe), client.max_page_size(timeframe)
    cursor, pages = since_ms, 0
    batches: list[np.ndarray] = []
    while cursor < until_ms:
        if _time_up(deadline, pages):
            return sorted_unique(np.concatenate(batches)), pages, cursor
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
    return sorted_unique(np.concatenate(batches) if batches else np.zeros((0, 6))), pages, until_ms


def sorted_unique(rows: np.ndarray) -> np.ndarray:
    """Sort by time and keep the last copy of each time (a later page corrects an earlier one)."""
    import numpy as np

    if not len(rows):
        return rows
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    keep = np.r_[rows[1:, 0] != rows[:-1, 0], True]
    return rows[keep]


def ensure_chunk(client: ExchangeClient, candles: CandleRange, start_ms: int, *,
                 store: BlobStore | None = None) -> tuple[Chunk, int]:
    """The range's chunk at ``start_ms`` filled up to its end or the last closed candle at
    ``as_of_ms``, and the pages fetched for it (0 when the store had it): :func:`plan_chunk`,
    then :func:`fill_chunk`."""
    store = store or get_store()
    item = plan_chunk(candles, start_ms, page_size=client.max_page_size(candles.timeframe), store=store)
    return fill_chunk(item, candles, client=client, store=store)


def fill_chunk(item: ChunkPlan, candles: CandleRange, *, client: ExchangeClient | None, store: BlobStore,
               on_page: Callable[[int, int], None] | None = None, deadline: float | None = None
               ) -> tuple[Chunk, int]:
    """The planned chunk filled to its target, and the pages that took. A ready chunk is returned
    as planned (no I/O); otherwise the pages after what the store held are fetched with ``client``
    and the chunk is stored (the chunk holding "now" with ``covered_until`` at the last closed
    candle, never as complete). Without a client a chunk that is not ready is a bug of the caller
    (it promised the store had everything): :class:`RuntimeError`.

    Raises:
        FillTimeUp: ``deadline`` (``time.monotonic()``) passed before the chunk was filled; what
            its pages brought is stored, covered up to the last of them.
    """

    timeframe = candles.timeframe
    end = item.start_ms + chunk_span_ms(timeframe)
    if item.ready:
        return (item.cached if item.cached is not None else _empty(item.start_ms, end, item.target_ms)), 0
    if client is None:
        raise RuntimeError(f"candle chunk {item.start_ms} of {candles.exchange} {candles.symbol} {timeframe} "
                           "is not in the store; fetch it before loading the range from the store alone")
    key = chunk_key(candles.exchange, candles.symbol, timeframe, item.start_ms)
    with _filling(key):  # concurrent requests for one chunk: one fetches, the others read what it stored
        again = plan_chunk(candles, item.start_ms, page_size=client.max_page_size(timeframe), store=store)
        if again.ready:
            return (again.cached if again.cached is not None else _empty(item.start_ms, end, item.target_ms)), 0
        return _fetch_chunk(again, candles, client, store, key, on_page, deadline)


def _fetch_chunk(item: ChunkPlan, candles: CandleRange, client: ExchangeClient, store: BlobStore, key: str,
                 on_page: Callable[[int, int], None] | None, deadline: float | None) -> tuple[Chunk, int]:
    import numpy as np

    timeframe, cached = candles.timeframe, item.cached
    end = item.start_ms + chunk_span_ms(timeframe)
    head, have = (cached.covered_from, cached.covered_until_ms) if cached is not None else (item.start_ms,) * 2
    rows, pages, reached = fetch_rows(client, candles.symbol, timeframe, have, item.target_ms, on_page,
                                      deadline=deadline) if have < item.target_ms else (np.zeros((0, 6)), 0, have)
    covered_from = head if head > item.start_ms else None  # an imported chunk: its file starts later
    if covered_from is not None and reached >= item.target_ms and not _time_up(deadline, pages):
        # the time before the file, in one step (a chunk covers one span): a later call's first
        head_rows, head_pages, _ = fetch_rows(client, candles.symbol, timeframe, item.start_ms, head, on_page)
        rows, pages, covered_from = np.concatenate([head_rows, rows]), pages + head_pages, None
    if cached is not None and len(cached):
        old = cached.rows()
        # inside its coverage the store's candles stay (an import is the user's own data)
        fresh = rows[(rows[:, 0] < head) | (rows[:, 0] >= have)]
        rows = sorted_unique(np.concatenate([fresh, old[(old[:, 0] >= head) & (old[:, 0] < have)]]))
    chunk = Chunk.from_rows(item.start_ms, end, min(reached, item.target_ms), rows, covered_from_ms=covered_from)
    stored = None if _fills(chunk, item) else load_chunk(store, key, timeframe)
    if stored is not None and stored.covered_from <= chunk.covered_from and \
            stored.covered_until_ms >= chunk.covered_until_ms:
        chunk = stored  # another container stored more of it meanwhile: never replace it with less
    else:
        store.put(key, encode(chunk))
    if not _fills(chunk, item):
        raise FillTimeUp(f"{candles.exchange} {candles.symbol} {timeframe}: the download stopped at "
                         f"{reached} after {pages} pages; the next call goes on from there.")
    return chunk, pages


def _fills(chunk: Chunk, item: ChunkPlan) -> bool:
    """Whether ``chunk`` covers its planned span whole, from its start to the plan's target."""
    return chunk.covered_from == item.start_ms and chunk.covered_until_ms >= item.target_ms


def _time_up(deadline: float | None, pages: int) -> bool:
    """Whether a download past ``pages`` pages of this call must stop: ``deadline``
    (``time.monotonic()``) has passed, and the call has made progress (the first page always goes)."""
    return deadline is not None and pages > 0 and monotonic() > deadline


_fill_locks: dict[str, threading.Lock] = {}
_fill_locks_guard = threading.Lock()


def _filling(key: str) -> threading.Lock:
    """The container's lock of one chunk key, held while that chunk is fetched (single flight:
    50 backtests of one new week asked the exchange for the same pages 50 times, in turn)."""
    with _fill_locks_guard:
        return _fill_locks.setdefault(key, threading.Lock())


def _empty(start: int, end: int, covered: int) -> Chunk:
    import numpy as np

    nothing = np.zeros(0)
    return Chunk(start, end, covered, np.zeros(0, np.int64), nothing, nothing, nothing, nothing, nothing)


def assemble(chunks: list[Chunk], timeframe: str, start_ms: int, end_ms: int, *, now: int | None = None,
             pages: int = 0, cached: int = 0, exchange: str = "") -> FetchedCandles:
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
    time, open_, high, low, close, volume = (np.ascontiguousarray(c[lo:hi]) for c in columns)
    gaps = find_gaps(time, timeframe_ms(timeframe), start_ms, bound)
    return FetchedCandles(time=time, open=open_, high=high, low=low, close=close, volume=volume, exchange=exchange,
                          gaps=tuple(gaps), pages_fetched=pages, chunks_cached=cached,
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
                  client: ExchangeClient | None = None, now: int | None = None,
                  fill_seconds: float | None = None) -> FetchedCandles:
    """Closed candles with open times in ``[start_ms, end_ms)`` (epoch ms, UTC).

    Chunks already in the store are not fetched again (a range the store covers, e.g. from ``capandex
    candles import``, asks nothing of the exchange); the rest are fetched page by page at the
    exchange's maximum page size and stored. The result is sorted and de-duplicated; where the
    exchange has no candles the result has none either, and :attr:`FetchedCandles.gaps` says where.

    Args:
        exchange: an active exchange id (``binance``).
        symbol: a spot symbol (``BTC/USDT``).
        timeframe: 1m, 5m, 15m, 1h, 4h or 1d.
        progress: called as ``progress(done, total)`` in candle slots as the work advances.
        store, client, now: injected in tests; the container's store/client and the clock otherwise.
        fill_seconds: request no page after this many seconds (None: fill every chunk) but the
            first: what the pages brought is stored, a chunk cut short as covered up to them.

    Raises:
        BadRequest: unknown exchange, symbol or timeframe. RateLimited, UpstreamUnavailable,
        UpstreamError: the exchange failed (after the retries of :mod:`capandex.exchanges.retry`).
        FillTimeUp: ``fill_seconds`` passed with chunks still to fill (those filled are stored).
    """
    from capandex.exchanges import get_client

    timeframe_ms(timeframe)  # an unknown timeframe is a BadRequest before any exchange call
    client = client or get_client(exchange)
    store = store or get_store()
    candles = CandleRange(exchange, symbol, timeframe, start_ms, end_ms, now_ms() if now is None else now)
    plans = plan(candles, page_size=client.max_page_size(timeframe), store=store)
    if not plans or not all(item.ready for item in plans):
        client.market(symbol)  # an unknown symbol is a 400 before any page; a stored range needs no exchange
    deadline = None if fill_seconds is None else monotonic() + fill_seconds
    return load(candles, plans, store=store, client=client, progress=progress, fill_deadline=deadline)


def load(candles: CandleRange, plans: list[ChunkPlan], *, store: BlobStore, client: ExchangeClient | None = None,
         progress: Progress | None = None, fill_deadline: float | None = None) -> FetchedCandles:
    """The range's candles from its :func:`plan`: chunks the plan found ready are used as read
    (never read again), the others are fetched with ``client`` and stored (:func:`fill_chunk`;
    without a client every chunk must be ready), no page requested after ``fill_deadline``
    (``time.monotonic()``; :class:`FillTimeUp`) but the first, so every call makes progress.
    ``progress(done, total)`` counts candle slots."""
    step, start_ms, end_ms = timeframe_ms(candles.timeframe), candles.start_ms, candles.end_ms
    total = candles.slots
    done = 0

    def advance(from_ms: int, to_ms: int) -> None:
        """Count the slots of ``[from_ms, to_ms)`` inside the requested range."""
        nonlocal done
        slots = max(0, (min(to_ms, end_ms) - max(from_ms, start_ms)) // step)
        done = min(total, done + slots)
        if progress and slots:
            progress(done, total)

    chunks, pages, cached = [], 0, 0
    for index, item in enumerate(plans):
        if not item.ready and _time_up(fill_deadline, pages):
            left = sum(not p.ready for p in plans[index:])
            raise FillTimeUp(f"{candles.exchange} {candles.symbol} {candles.timeframe}: {left} of {len(plans)} candle "
                             "chunks are still to be downloaded; the next call goes on from there.")
        advance(item.start_ms, item.cached.covered_until_ms if item.cached is not None else item.start_ms)
        chunk, used = fill_chunk(item, candles, client=client, store=store, on_page=advance, deadline=fill_deadline)
        chunks.append(chunk)
        pages += used
        cached += used == 0
    if progress and done < total:  # trailing gaps: no page advanced over them
        done = total
        progress(done, total)
    if progress and not plans:
        progress(0, 0)
    return assemble(chunks, candles.timeframe, start_ms, end_ms, now=candles.as_of_ms, pages=pages, cached=cached,
                    exchange=candles.exchange)
