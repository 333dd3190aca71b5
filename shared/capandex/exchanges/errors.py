"""The one place where ccxt's exceptions become Capandex's (DESIGN.md §3).

Every call into ccxt runs inside :func:`ccxt_errors`, one ``except`` ladder ordered from the most
specific class to the most general, as freqtrade's exchange wrapper does. No raw ccxt exception
leaves :mod:`capandex.exchanges`; each is re-raised ``from`` the original so the log keeps the cause.

Order calls (placing, looking up) run inside :func:`order_errors` too, nested in the ladder: the
exchange's answers that mean something for an order — insufficient funds, an unknown symbol, a
client order id already used, an order the exchange does not know — become the order classes below,
whose docstrings say what the caller should do. Where ccxt files such an answer under a general
class (OKX's duplicate ``clOrdId`` and Bybit's duplicate ``orderLinkId`` are ccxt ``InvalidOrder``;
Binance's "Duplicate order sent." is ``InvalidOrder`` -2010, like every other refused new order),
the exchange's own code decides, through the tables :data:`DUPLICATE_ID_ERRORS` and
:data:`UNKNOWN_SYMBOL_ERRORS` (data, not branches). Outside order calls these answers keep their
general meaning (an :class:`~capandex.errors.UpstreamError`).

Messages never repeat ccxt's text verbatim: it carries the request URL, whose query string holds
the signature (and on some exchanges the API key) of signed calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

from capandex.errors import BadRequest, InvalidCredentials, RateLimited, UpstreamError, UpstreamUnavailable
from capandex.telemetry import Metric, count

#: seconds to tell a rate-limited caller to wait when the exchange sent no Retry-After
DEFAULT_RETRY_AFTER = 1.0

#: Error codes ccxt files under ``BadRequest`` that really mean "these credentials are wrong"
#: (Binance spot answers a signature made with the wrong secret with -1022, which ccxt maps to
#: BadRequest for spot and to AuthenticationError elsewhere). Data, not branches.
CREDENTIAL_ERROR_CODES: dict[str, re.Pattern[str]] = {"binance": re.compile(r'"code":\s*-1022\b')}

#: Answers to a new order meaning "an order with this client id exists already", where ccxt does not
#: raise ``DuplicateOrderId``: Binance -2010 "Duplicate order sent." (the id of an order still
#: open), OKX sCode 51016 "Duplicated clOrdId", Bybit retCode 170141 "Duplicate clientOrderId"
#: (spot), 110072 "OrderLinkedID is duplicate" (unified account) and 10014 "Invalid duplicate
#: request" (the same request seen twice) — codes from each exchange's error-code reference.
DUPLICATE_ID_ERRORS: dict[str, re.Pattern[str]] = {
    "binance": re.compile(r"Duplicate order sent"),
    "okx": re.compile(r'"sCode":\s*"51016"'),
    "bybit": re.compile(r'"retCode":\s*(?:170141|110072|10014)\b'),
}

#: Answers to a new order meaning "no such symbol" that ccxt files under ``InvalidOrder`` rather
#: than ``BadSymbol``: Bybit retCode 170121 "Invalid symbol." (spot).
UNKNOWN_SYMBOL_ERRORS: dict[str, re.Pattern[str]] = {"bybit": re.compile(r'"retCode":\s*170121\b')}

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


# -- order outcomes: what the exchange said about an order, and what to do about it ---------------
class OrderRejected(UpstreamError):
    """The exchange refused the order for good (insufficient balance, an unknown or delisted
    symbol, an invalid amount): placing the same order again cannot succeed, so do not retry it;
    record it as rejected and tell the user. ``reason`` says which (a short snake_case word)."""

    code = "order_rejected"
    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InsufficientBalance(OrderRejected):
    """The account lacks the funds (quote for a buy, base for a sell): fund it, or trade less."""

    reason = "insufficient_balance"


class SymbolNotTradable(OrderRejected):
    """The exchange does not trade the symbol (delisted, halted or unknown): trade another one."""

    reason = "delisted"


class DuplicateClientOrderId(UpstreamError):
    """The exchange already has an order with this client id — an earlier attempt that looked
    failed went through, or another worker placed it. Do not place it again: look the id up."""

    code = "duplicate_client_order_id"


class OrderNotFound(UpstreamError):
    """The exchange does not know the order. For a lookup by client id: not placed, or not visible
    yet (a new order can take a moment to appear); look again before concluding it was not placed."""

    code = "order_not_found"


class OrderOutcomeUnknown(UpstreamUnavailable):
    """The placement failed ambiguously and the exchange does not (yet) know the client id: retry
    later with the same id; looking it up first makes that retry safe."""

    code = "order_outcome_unknown"


@contextmanager
def order_errors(exchange_id: str, what: str) -> Iterator[None]:
    """The order-level rungs of the ladder, for order calls (:func:`ccxt_errors` with ``orders=True``
    runs the block inside this). Errors that mean nothing particular for an order pass through to
    the general ladder."""
    import ccxt

    try:
        yield
    except ccxt.DuplicateOrderId as exc:
        raise DuplicateClientOrderId(f"{exchange_id} already has an order with this client id ({what}).") from exc
    except ccxt.OrderNotFound as exc:
        raise OrderNotFound(f"{exchange_id} does not know the order ({what}).") from exc
    except ccxt.InsufficientFunds as exc:
        raise InsufficientBalance(f"{exchange_id} refused the order for lack of funds ({what}).") from exc
    except ccxt.BadSymbol as exc:
        raise SymbolNotTradable(f"{exchange_id} does not trade that symbol ({what}).") from exc
    except (ccxt.InvalidOrder, ccxt.BadRequest) as exc:
        text = str(exc)
        if _matches(DUPLICATE_ID_ERRORS, exchange_id, text):
            raise DuplicateClientOrderId(f"{exchange_id} already has an order with this client id "
                                         f"({what}).") from exc
        if _matches(UNKNOWN_SYMBOL_ERRORS, exchange_id, text):
            raise SymbolNotTradable(f"{exchange_id} does not trade that symbol ({what}).") from exc
        if isinstance(exc, ccxt.InvalidOrder):
            raise OrderRejected(f"{exchange_id} rejected the order ({what}): {redact(text)}") from exc
        raise


def _matches(table: Mapping[str, re.Pattern[str]], exchange_id: str, text: str) -> bool:
    pattern = table.get(exchange_id)
    return pattern is not None and pattern.search(text) is not None


# -- the ladder ------------------------------------------------------------------------------------
@contextmanager
def ccxt_errors(exchange_id: str, what: str, *, orders: bool = False,
                response_headers: Callable[[], Mapping[str, str] | None] = lambda: None) -> Iterator[None]:
    """Translate any ccxt exception raised inside the block.

    Args:
        exchange_id: named in every message.
        what: the operation, for messages (``"fetching the ticker of BTC/USDT"``).
        orders: the block places or looks up an order: apply :func:`order_errors` first.
        response_headers: the last HTTP response's headers (for ``Retry-After``), read lazily.

    Mapping: ``BadSymbol``/``NotSupported``/other ``BadRequest`` → :class:`BadRequest` (400);
    ``AuthenticationError``/``PermissionDenied`` → :class:`InvalidCredentials`; ``RateLimitExceeded``/
    ``DDoSProtection`` → :class:`RateLimited` (429, Retry-After); ``NetworkError``/``RequestTimeout``/
    ``ExchangeNotAvailable`` → :class:`UpstreamUnavailable` (503); any other ``ExchangeError`` or
    ``BaseError`` (a garbled answer) → :class:`UpstreamError` (502).
    """
    import ccxt

    order_rungs: AbstractContextManager[None] = order_errors(exchange_id, what) if orders else nullcontext()
    try:
        with order_rungs:
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
