"""A tiny thread-safe time-to-live cache, per container: exchange markets, tickers and lookups,
Supabase Auth's session verdicts, dashboard balances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class TTLCache:
    """Values kept for ``ttl_s`` seconds (monotonic clock), at most ``max_items`` of them.

    ``get_or_set`` computes a missing or expired value outside the lock, so a slow exchange call
    for one key never blocks readers of another; two threads missing the same key at once may
    both compute it, which is harmless for idempotent reads.
    """

    def __init__(self, ttl_s: float, max_items: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_items, self._clock = ttl_s, max_items, clock
        self._items: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value stored under ``key`` while it is fresh, else ``default``."""
        with self._lock:
            hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > self._clock() else default

    def put(self, key: Hashable, value: Any) -> None:
        now = self._clock()
        with self._lock:
            if len(self._items) >= self.max_items and key not in self._items:
                self._evict(now)
            self._items[key] = (now + self.ttl_s, value)

    def get_or_set(self, key: Hashable, compute: Callable[[], T]) -> T:
        now = self._clock()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            cached: T = hit[1]
            return cached
        value = compute()
        self.put(key, value)
        return value

    def _evict(self, now: float) -> None:
        expired = [k for k, (until, _) in self._items.items() if until <= now]
        for key in expired or list(self._items)[: max(1, len(self._items) // 4)]:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
