"""Retry exchange READS on temporary failures (never order placement).

Placing an order twice is worse than failing once, so :func:`retrier` decorates only reads
(markets, tickers, candles, balances). It retries :class:`~capandex.errors.UpstreamUnavailable`
(timeouts, 5xx, connection errors) and :class:`~capandex.errors.RateLimited`; anything else (a bad
symbol, bad credentials, an exchange error) fails at once because repeating it cannot help.

**This is the only layer that retries exchange reads.** Nothing above it loops over a read again
(a retry around a retried read multiplies: 4 × 3 attempts made one failing candle page cost 12
requests), and the backtest state machine's ``Retry`` covers only Lambda's own invocation errors
(``Lambda.*``), never an exchange error. How patient a read is depends on who waits for it, not on
the read: :data:`REQUEST` (the default) keeps every attempt inside API Gateway's 29 s;
background work (the backtest tasks, ``capandex serve``'s pool) runs its reads under
``with patience(BACKGROUND):`` — more attempts, longer waits. A read that still fails raises, and
the caller reports it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from capandex.errors import RateLimited, UpstreamUnavailable

logger = logging.getLogger("capandex.exchanges")

F = TypeVar("F", bound=Callable[..., Any])

#: retries after the first attempt on a request path (:data:`REQUEST`)
DEFAULT_RETRIES = 2
#: the longest single wait (seconds): a request-path caller must not hang on a long Retry-After
MAX_WAIT_S = 5.0
#: seconds one read may take with all its attempts: API Gateway cuts a request at 29 s with a bare
#: 504 (and Lambda kills the function), so a retry that could end past this is not started and the
#: caller gets the JSON 503/429 instead
RETRY_BUDGET_S = 25.0

#: indirections so tests patch the waiting and the clock out (``monkeypatch.setattr(retry, "sleep", ...)``)
sleep = time.sleep
monotonic = time.monotonic


def attempt_s() -> float:
    """The longest one attempt can take: the exchange timeout (``CAPANDEX_EXCHANGE_TIMEOUT_MS``)."""
    from capandex.config import get_settings

    return get_settings().exchange_timeout_ms / 1000.0


@dataclass(frozen=True, slots=True)
class Patience:
    """How hard a read tries: ``retries`` after the first attempt, waiting ``base_s × 2ⁿ`` before
    retry n (or the exchange's Retry-After), each wait at most ``max_wait_s``, and no retry that
    could end (wait plus one attempt at the exchange timeout) past ``budget_s`` after the start."""

    retries: int
    base_s: float
    max_wait_s: float
    budget_s: float


#: a caller waiting in an HTTP request (the default): 3 attempts, 0.25 s then 0.5 s apart, within 25 s
REQUEST = Patience(retries=DEFAULT_RETRIES, base_s=0.25, max_wait_s=MAX_WAIT_S, budget_s=RETRY_BUDGET_S)
#: background work nobody waits on in a request (a backtest's Step Functions tasks, ``capandex
#: serve``'s pool): 6 attempts, 1, 2, 4, 8, 16 s apart (a Retry-After up to 20 s), within 90 s —
#: an outage of half a minute does not fail a long backtest, and one read stays well inside the
#: fetch task's 300 s Lambda timeout
BACKGROUND = Patience(retries=5, base_s=1.0, max_wait_s=20.0, budget_s=90.0)

_patience: ContextVar[Patience] = ContextVar("capandex_exchange_read_patience", default=REQUEST)


@contextmanager
def patience(level: Patience) -> Iterator[None]:
    """Reads made inside the block (in this thread or task) retry with ``level``."""
    token = _patience.set(level)
    try:
        yield
    finally:
        _patience.reset(token)


def backoff_s(attempt: int, exc: Exception, level: Patience = REQUEST) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the exchange's Retry-After when it
    rate-limited us, else exponential from ``level.base_s`` (0.25 s, 0.5 s, 1 s, … for
    :data:`REQUEST`) — capped at ``level.max_wait_s``."""
    if isinstance(exc, RateLimited) and "Retry-After" in exc.headers:
        return min(level.max_wait_s, float(exc.headers["Retry-After"]))
    return min(level.max_wait_s, level.base_s * 2.0 ** attempt)


def _too_far(exc: Exception, level: Patience) -> bool:
    """A Retry-After beyond the longest wait of ``level``: an earlier retry would only be refused
    again (a Binance 418 ban, an exchange key's budget empty for the next 30 s), so none is made."""
    after = exc.headers.get("Retry-After") if isinstance(exc, RateLimited) else None
    return after is not None and float(after) > level.max_wait_s


@overload
def retrier(func: F) -> F: ...
@overload
def retrier(*, retries: int | None = None) -> Callable[[F], F]: ...


def retrier(func: Any = None, *, retries: int | None = None) -> Any:
    """Decorate a read so temporary failures are retried as the caller's :class:`Patience` says
    (``@retrier``; ``@retrier(retries=4)`` fixes the count), and only while the wait plus one more
    attempt (at the exchange timeout) still ends within the patience's budget of the first, and
    never after a Retry-After longer than the patience's longest wait; the last failure
    propagates unchanged."""

    def decorate(inner: F) -> F:
        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            level = _patience.get()
            tries = level.retries if retries is None else retries
            deadline = monotonic() + level.budget_s
            for attempt in range(tries + 1):
                try:
                    return inner(*args, **kwargs)
                except (UpstreamUnavailable, RateLimited) as exc:
                    wait = backoff_s(attempt, exc, level)
                    if attempt == tries or monotonic() + wait + attempt_s() > deadline or _too_far(exc, level):
                        logger.warning("giving up on %s after %d attempts: %s", inner.__name__,
                                       attempt + 1, exc.message)
                        raise
                    logger.info("%s failed (%s); retrying still for %d times in %.2f s",
                                inner.__name__, exc.code, tries - attempt, wait)
                    sleep(wait)
            raise AssertionError("unreachable")

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
