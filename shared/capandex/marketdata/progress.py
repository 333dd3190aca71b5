"""A one-line progress bar on stderr for candle downloads (``capandex backtest --exchange …``).

    from capandex.marketdata import fetch_candles, progress_bar
    with progress_bar("BTC/USDT 1m") as bar:
        candles = fetch_candles("binance", "BTC/USDT", "1m", start, end, progress=bar)
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable as ``bar(done, total)``; redraws at most every ``interval_s`` and on completion.

    On a non-terminal stream it prints nothing until :meth:`close`, which writes one summary line,
    so logs and CI output stay clean.
    """

    def __init__(self, label: str = "candles", stream: TextIO | None = None, width: int = 30,
                 interval_s: float = 0.1) -> None:
        self.label, self.stream, self.width, self.interval_s = label, stream or sys.stderr, width, interval_s
        self.done = self.total = 0
        self._drawn_at = 0.0
        self._started = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if self._tty and (done >= total or now - self._drawn_at >= self.interval_s):
            self._drawn_at = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = round(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{self.label} [{bar}] {fraction * 100:5.1f}% {self.done:,}/{self.total:,}"

    def close(self) -> None:
        elapsed = time.monotonic() - self._started
        self.stream.write(("\r" if self._tty else "") + f"{self.line()} in {elapsed:.1f} s\n")
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self.total:  # a failure: say where it stopped, never a finished-looking bar
            self.stream.write(("\r" if self._tty else "") + f"{self.line()} stopped\n")
            self.stream.flush()


def progress_bar(label: str = "candles", stream: TextIO | None = None) -> ProgressBar:
    """A :class:`ProgressBar` to pass as ``progress=`` (use it as a context manager)."""
    return ProgressBar(label, stream)
