"""Fixed candle chunks: the unit of caching, fetching and Step Functions fan-out.

A chunk holds the candles of one (exchange, symbol, timeframe) whose open times fall in
``[start, start + CHUNK_CANDLES × timeframe)``, with ``start`` a multiple of that span since the
epoch: the grid is fixed, so two overlapping requests share chunks and never fetch a page twice.

A chunk records the time it holds authoritative data for, ``[covered_from, covered_until)``. A
chunk fetched from the exchange covers from its start; one in the past is complete
(``covered_until == end``); the chunk that contains "now" is stored with ``covered_until`` at the
last closed candle, so a later request fetches only its tail. A chunk filled by ``capandex candles
import`` covers what the file covered, so ``covered_from`` may lie after the start: a request
inside that span needs no exchange (offline backtests), one reaching before it fetches the head.

Binary format (little endian), loaded without copying by ``numpy.frombuffer``::

    b"CDXCHK02" | int64 start_ms | int64 covered_from_ms | int64 covered_until_ms | int64 n
    | int64 time[n] | float64 open[n] | high[n] | low[n] | close[n] | volume[n]

Chunks written before ``covered_from`` existed (``CDXCHK01``, without that field) cover from their start.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from capandex.errors import BadRequest, field_problem

#: timeframes Capandex offers, in milliseconds
TIMEFRAME_MS: dict[str, int] = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000,
                                "4h": 14_400_000, "1d": 86_400_000}
#: candles per chunk (8 1/3 days of 1m, 576 kB): a multiple of the page sizes 100, 200, 300, 500, 1000
CHUNK_CANDLES = 12_000
#: a candle counts as closed (and published) this long after its close time
SETTLE_MS = 60_000

_MAGIC, _MAGIC_V1 = b"CDXCHK02", b"CDXCHK01"
_HEADER, _HEADER_V1 = struct.Struct("<8sqqqq"), struct.Struct("<8sqqq")
FIELDS = ("open", "high", "low", "close", "volume")


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds of a timeframe; :class:`BadRequest` naming the valid ones otherwise."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        valid = ", ".join(TIMEFRAME_MS)
        raise BadRequest(f"Unknown timeframe '{timeframe}'; use one of {valid}.",
                         details=[field_problem("timeframe", f"must be one of {valid}")]) from None


def chunk_span_ms(timeframe: str) -> int:
    return CHUNK_CANDLES * timeframe_ms(timeframe)


def chunk_starts(timeframe: str, start_ms: int, end_ms: int) -> list[int]:
    """Starts of the chunks that hold open times in ``[start_ms, end_ms)``."""
    span = chunk_span_ms(timeframe)
    if end_ms <= start_ms:
        return []
    return list(range(start_ms // span * span, end_ms, span))


def closed_until(timeframe: str, now_ms: int) -> int:
    """Exclusive bound of the open times of candles closed (and settled) at ``now_ms``: a candle
    opening at ``t`` closes at ``t + timeframe``, which must be at least :data:`SETTLE_MS` ago."""
    step = timeframe_ms(timeframe)
    return (now_ms - SETTLE_MS) // step * step


def chunk_key(exchange: str, symbol: str, timeframe: str, start_ms: int) -> str:
    """The store key of a chunk (``/`` in symbols becomes ``_``; other odd characters are quoted).

    An exchange in ``CAPANDEX_EXCHANGE_SANDBOX`` is fetched from its testnet, whose candles are
    not the real market's: they live under ``<exchange>.testnet`` so that turning sandbox mode off
    again never serves them (complete chunks are kept for good and shared by every user)."""
    from capandex.config import get_settings

    source = f"{exchange}.testnet" if exchange in get_settings().exchange_sandbox else exchange
    safe_symbol = quote(symbol.replace("/", "_"), safe="_-.:")
    return f"candles/v1/{source}/{safe_symbol}/{timeframe}/{start_ms}.cdx"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk's candles (numpy arrays, time int64 ms, values float64) and the open times they are
    authoritative for, ``[covered_from_ms, covered_until_ms)`` (``covered_from_ms`` None: the start)."""

    start_ms: int
    end_ms: int
    covered_until_ms: int
    time: Any
    open: Any
    high: Any
    low: Any
    close: Any
    volume: Any
    covered_from_ms: int | None = None

    @classmethod
    def from_rows(cls, start_ms: int, end_ms: int, covered_until_ms: int, rows: Any,
                  covered_from_ms: int | None = None) -> Chunk:
        """A chunk holding ``rows`` (float64 ``[time, open, high, low, close, volume]``, sorted by time)."""
        import numpy as np

        open_, high, low, close, volume = (np.ascontiguousarray(rows[:, i]) for i in range(1, 6))
        return cls(start_ms, end_ms, covered_until_ms, rows[:, 0].astype(np.int64), open_, high, low, close,
                   volume, covered_from_ms=covered_from_ms)

    def rows(self) -> Any:
        """The candles as float64 rows ``[time, open, high, low, close, volume]`` (a copy)."""
        import numpy as np

        return np.column_stack([self.time.astype(np.float64), self.open, self.high, self.low, self.close,
                                self.volume])

    @property
    def covered_from(self) -> int:
        return self.start_ms if self.covered_from_ms is None else self.covered_from_ms

    @property
    def complete(self) -> bool:
        return self.covered_from <= self.start_ms and self.covered_until_ms >= self.end_ms

    def covers(self, start_ms: int, end_ms: int) -> bool:
        """Whether the open times ``[start_ms, end_ms)`` lie inside what this chunk is authoritative for."""
        return self.covered_from <= start_ms and end_ms <= self.covered_until_ms

    def __len__(self) -> int:
        return int(self.time.shape[0])


def encode(chunk: Chunk) -> bytes:
    import numpy as np

    n = len(chunk)
    parts = [_HEADER.pack(_MAGIC, chunk.start_ms, chunk.covered_from, chunk.covered_until_ms, n),
             np.ascontiguousarray(chunk.time, dtype="<i8").tobytes()]
    parts += [np.ascontiguousarray(getattr(chunk, name), dtype="<f8").tobytes() for name in FIELDS]
    return b"".join(parts)


def decode(data: bytes, timeframe: str) -> Chunk:
    import numpy as np

    if data[:8] == _MAGIC_V1:
        _, start, covered, n = _HEADER_V1.unpack_from(data)
        covered_from, offset = start, _HEADER_V1.size
    else:
        magic, start, covered_from, covered, n = _HEADER.unpack_from(data)
        offset = _HEADER.size
        if magic != _MAGIC:
            raise ValueError("not a candle chunk (bad magic)")
    if len(data) != offset + 48 * n:
        raise ValueError("not a candle chunk (bad length)")
    time = np.frombuffer(data, dtype="<i8", count=n, offset=offset)
    open_, high, low, close, volume = (np.frombuffer(data, dtype="<f8", count=n, offset=offset + 8 * n * (i + 1))
                                       for i in range(5))
    return Chunk(start, start + chunk_span_ms(timeframe), covered, time, open_, high, low, close, volume,
                 covered_from_ms=covered_from)
