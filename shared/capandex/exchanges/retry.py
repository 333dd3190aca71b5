"""Retry exchange READS on temporary failures (never order placement).

Placing an order twice is worse than failing once, so :func:`retrier` decorates only reads
(markets, tickers, candles, balances). It retries :class:`~capandex.errors.UpstreamUnavailable`
(timeouts, 5xx, connection errors) and :class:`~capandex.errors.RateLimited`; anything else (a bad
symbol, bad credentials, an exchange error) fails at once because repeating it cannot help.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from capandex.errors import RateLimited, UpstreamUnavailable

logger = logging.getLogger("capandex.exchanges")

F = TypeVar("F", bound=Callable[..., Any])

#: retries after the first attempt, unless the decorator says otherwise
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


def backoff_s(attempt: int, exc: Exception) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the exchange's Retry-After when it
    rate-limited us, else exponential 0.25 s, 0.5 s, 1 s, … — capped at :data:`MAX_WAIT_S`."""
    if isinstance(exc, RateLimited) and "Retry-After" in exc.headers:
        return min(MAX_WAIT_S, float(exc.headers["Retry-After"]))
    return min(MAX_WAIT_S, 0.25 * 2 ** attempt)


@overload
def retrier(func: F) -> F: ...
@overload
def retrier(*, retries: int = DEFAULT_RETRIES) -> Callable[[F], F]: ...


def retrier(func: Any = None, *, retries: int = DEFAULT_RETRIES) -> Any:
    """Decorate a read so temporary failures are retried ``retries`` times (``@retrier`` or
    ``@retrier(retries=4)``), and only while the wait plus one more attempt (at the exchange
    timeout) still ends within :data:`RETRY_BUDGET_S` of the first; the last failure propagates
    unchanged."""

    def decorate(inner: F) -> F:
        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            deadline = monotonic() + RETRY_BUDGET_S
            for attempt in range(retries + 1):
                try:
                    return inner(*args, **kwargs)
                except (UpstreamUnavailable, RateLimited) as exc:
                    wait = backoff_s(attempt, exc)
                    if attempt == retries or monotonic() + wait + attempt_s() > deadline:
                        logger.warning("giving up on %s after %d attempts: %s", inner.__name__,
                                       attempt + 1, exc.message)
                        raise
                    logger.info("%s failed (%s); retrying still for %d times in %.2f s",
                                inner.__name__, exc.code, retries - attempt, wait)
                    sleep(wait)
            raise AssertionError("unreachable")

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
