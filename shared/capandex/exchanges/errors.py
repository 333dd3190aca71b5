"""The one place where ccxt's exceptions become Capandex's (DESIGN.md §3).

Every call into ccxt runs inside :func:`ccxt_errors`, one ``except`` ladder ordered from the most
specific class to the most general, as freqtrade's exchange wrapper does. No raw ccxt exception
leaves :mod:`capandex.exchanges`; each is re-raised ``from`` the original so the log keeps the cause.

Messages never repeat ccxt's text verbatim: it carries the request URL, whose query string holds
the signature (and on some exchanges the API key) of signed calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from capandex.errors import BadRequest, InvalidCredentials, RateLimited, UpstreamError, UpstreamUnavailable
from capandex.telemetry import Metric, count

#: seconds to tell a rate-limited caller to wait when the exchange sent no Retry-After
DEFAULT_RETRY_AFTER = 1.0

#: Error codes ccxt files under ``BadRequest`` that really mean "these credentials are wrong"
#: (Binance spot answers a signature made with the wrong secret with -1022, which ccxt maps to
#: BadRequest for spot and to AuthenticationError elsewhere). Data, not branches.
CREDENTIAL_ERROR_CODES: dict[str, re.Pattern[str]] = {"binance": re.compile(r'"code":\s*-1022\b')}

_URL = re.compile(r"https?://\S+")
_SECRETISH = re.compile(r"(?i)(signature|apikey|api_key|secret|passphrase|token)=[^&\s]+")


def redact(text: str, limit: int = 200) -> str:
    """ccxt's message without URLs or credential-looking parameters, shortened to ``limit`` chars."""
    text = _SECRETISH.sub(r"\1=***", _URL.sub("<url>", text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after_of(headers: Mapping[str, str] | None) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds form), else the default."""
    if headers:
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except (TypeError, ValueError):
                    break
    return DEFAULT_RETRY_AFTER


@contextmanager
def ccxt_errors(exchange_id: str, what: str, *,
                response_headers: Callable[[], Mapping[str, str] | None] = lambda: None) -> Iterator[None]:
    """Translate any ccxt exception raised inside the block.

    Args:
        exchange_id: named in every message.
        what: the operation, for messages (``"fetching the ticker of BTC/USDT"``).
        response_headers: the last HTTP response's headers (for ``Retry-After``), read lazily.

    Mapping: ``BadSymbol``/``NotSupported``/other ``BadRequest`` → :class:`BadRequest` (400);
    ``AuthenticationError``/``PermissionDenied`` → :class:`InvalidCredentials`; ``RateLimitExceeded``/
    ``DDoSProtection`` → :class:`RateLimited` (429, Retry-After); ``NetworkError``/``RequestTimeout``/
    ``ExchangeNotAvailable`` → :class:`UpstreamUnavailable` (503); any other ``ExchangeError`` or
    ``BaseError`` (a garbled answer) → :class:`UpstreamError` (502).
    """
    import ccxt

    try:
        yield
    except ccxt.BadSymbol as exc:
        raise BadRequest(f"{exchange_id} does not list that symbol ({what}).") from exc
    except ccxt.NotSupported as exc:
        raise BadRequest(f"{exchange_id} does not support {what}.") from exc
    except ccxt.AuthenticationError as exc:  # includes PermissionDenied, AccountSuspended
        raise InvalidCredentials(f"{exchange_id} rejected the API key while {what}: {redact(str(exc))}") from exc
    except ccxt.BadRequest as exc:
        credential_codes = CREDENTIAL_ERROR_CODES.get(exchange_id)
        if credential_codes is not None and credential_codes.search(str(exc)):
            raise InvalidCredentials(f"{exchange_id} rejected the API signature while {what} (check the "
                                     f"secret): {redact(str(exc))}") from exc
        raise BadRequest(f"{exchange_id} refused the request while {what}: {redact(str(exc))}") from exc
    except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
        raise counted(exchange_id, RateLimited(f"{exchange_id} is rate limiting requests ({what}); retry later.",
                                                retry_after=retry_after_of(response_headers()))) from exc
    except ccxt.NetworkError as exc:  # RequestTimeout, ExchangeNotAvailable, OnMaintenance, …
        raise counted(exchange_id, UpstreamUnavailable(
            f"{exchange_id} could not be reached or timed out while {what}.")) from exc
    except ccxt.ExchangeError as exc:
        raise counted(exchange_id, UpstreamError(
            f"{exchange_id} answered with an error while {what}: {redact(str(exc))}")) from exc
    except ccxt.BaseError as exc:  # BadResponse, NullResponse, …: the answer made no sense
        raise counted(exchange_id, UpstreamError(f"{exchange_id} sent an unreadable answer while {what}.")) from exc


def counted(exchange_id: str, error: UpstreamError | UpstreamUnavailable | RateLimited) -> Exception:
    """``error``, counted as an upstream failure (operators watch these; a user's bad input is not one)."""
    count(Metric.UPSTREAM_ERRORS, upstream=exchange_id)
    return error
