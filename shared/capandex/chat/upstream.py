"""Anthropic's Messages API: the client, and how its failures reach our caller.

Before the first byte of our answer a failure is still an HTTP status (DESIGN.md §3):

=====================================  ======  =======================  ==========================
Anthropic                              status  code                     why
=====================================  ======  =======================  ==========================
401 authentication_error               400     invalid_credentials      the user's saved key is
403 permission_error                                                    wrong: they must fix it
429 rate_limit_error                   429     rate_limited             their key's quota; the
                                                                        ``Retry-After`` is Anthropic's
529 overloaded, 5xx, timeout,          503     upstream_unavailable     transient: retry later
connection refused                                                      (``Retry-After`` if given)
any other 4xx (bad model, too long)    502     upstream_error           Anthropic's message is kept
=====================================  ======  =======================  ==========================

The SDK itself retries 429/5xx/529 and connection errors ``anthropic_max_retries`` times
(honouring ``retry-after``) before any of these is raised. Once our 200 has been sent, the
same failures become an ``{"error": {"code", "message"}}`` event (:func:`stream_error`).
Anthropic's error messages never contain the API key, so they may be shown.
"""

from __future__ import annotations

import logging
import ssl
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from capandex.errors import (
    CapandexError,
    InvalidCredentials,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from capandex.telemetry import Metric, count

if TYPE_CHECKING:
    import anthropic

    from capandex.config import Settings

logger = logging.getLogger("capandex.chat")

#: Used when Anthropic answers 429 without a ``retry-after`` header (seconds).
DEFAULT_RETRY_AFTER = 30


class StreamBroken(Exception):
    """The upstream answer ended abnormally after our stream had started."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def to_event(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


#: The SDK, and the HTTP transport its first client imports (httpcore's async stack, h11; ~50
#: modules): importing is all :func:`preload` does, no client, socket or TLS context is created.
PRELOAD = ("anthropic", "httpcore2", "anyio.streams.tls")


def preload() -> None:
    """Import the SDK now. The chat function calls this while it starts, so its cost (1–3 s of
    imports) is part of the init that SnapStart snapshots instead of the first user's message."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One TLS context per container: each client would otherwise load the CA bundle again (~40 ms
    per message). Built at first use, not at init, so no OpenSSL state is frozen in a snapshot."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def make_client(api_key: str, settings: Settings) -> anthropic.AsyncAnthropic:
    """An async client for one user's key (async: a stream holds no worker thread while waiting)."""
    import anthropic

    return anthropic.AsyncAnthropic(api_key=api_key, base_url=settings.anthropic_base_url,
                                    max_retries=settings.anthropic_max_retries,
                                    timeout=settings.anthropic_timeout_seconds,
                                    http_client=anthropic.DefaultAsyncHttpxClient(verify=tls_context()))


def error_before_stream(exc: BaseException) -> CapandexError:
    """The HTTP error for a failure before our answer started (table in the module docstring).
    Anthropic's failures are counted for operators; a rejected user key is not one."""
    error = _classify(exc)
    if not isinstance(error, InvalidCredentials):
        count(Metric.UPSTREAM_ERRORS, upstream="anthropic")
    return error


def _classify(exc: BaseException) -> CapandexError:
    import anthropic

    if isinstance(exc, anthropic.AuthenticationError):
        return InvalidCredentials("Anthropic rejected your saved API key (401). Save a valid key with "
                                  "POST /api/ai-keys and try again.")
    if isinstance(exc, anthropic.PermissionDeniedError):
        return InvalidCredentials(f"Anthropic refused this request for your saved API key (403): "
                                  f"{_message(exc)}")
    if isinstance(exc, anthropic.RateLimitError):
        return RateLimited(f"Anthropic is rate-limiting your API key: {_message(exc)}",
                           retry_after=_retry_after(exc) or DEFAULT_RETRY_AFTER)
    if isinstance(exc, anthropic.InternalServerError):  # 5xx and 529 overloaded
        error = UpstreamUnavailable(f"Anthropic is unavailable right now ({exc.status_code}: "
                                    f"{_message(exc)}); try again shortly.")
        if (seconds := _retry_after(exc)) is not None:
            error.headers["Retry-After"] = str(seconds)
        return error
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code == 200:  # an ``error`` event as the very first event of the stream
            return _from_error_event(exc)
        return UpstreamError(f"Anthropic refused the request ({exc.status_code}): {_message(exc)}")
    if isinstance(exc, anthropic.APIConnectionError):  # includes timeouts
        return UpstreamUnavailable("Could not reach Anthropic (connection failed or timed out); try again shortly.")
    logger.warning("unexpected failure opening the Anthropic stream", exc_info=exc)
    return UpstreamUnavailable("The answer could not be started; try again shortly.")


def key_rejected(exc: BaseException) -> bool:
    """Whether Anthropic refused the key itself (401, 403): the saved key is then marked invalid."""
    import anthropic

    return isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError)


def stream_error(exc: BaseException) -> StreamBroken:
    """The error event for a failure after our stream started (counted for operators)."""
    import anthropic

    count(Metric.UPSTREAM_ERRORS, upstream="anthropic")
    if isinstance(exc, StreamBroken):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        kind = _error_type(exc)
        code = {"overloaded_error": "upstream_unavailable", "rate_limit_error": "rate_limited",
                "api_error": "upstream_unavailable"}.get(kind or "", "upstream_error")
        return StreamBroken(code, f"Anthropic stopped the answer: {_message(exc)}")
    if not isinstance(exc, anthropic.APIConnectionError):
        # httpx-level protocol errors (a connection cut mid-body) are not wrapped by the SDK.
        logger.info("anthropic stream interrupted: %s", type(exc).__name__)
    return interrupted()


def _from_error_event(exc: BaseException) -> CapandexError:
    kind = _error_type(exc)
    if kind == "rate_limit_error":
        return RateLimited(f"Anthropic is rate-limiting your API key: {_message(exc)}", retry_after=DEFAULT_RETRY_AFTER)
    if kind in ("overloaded_error", "api_error"):
        return UpstreamUnavailable(f"Anthropic is unavailable right now ({_message(exc)}); try again shortly.")
    return UpstreamError(f"Anthropic stopped the answer: {_message(exc)}")


def interrupted() -> StreamBroken:
    return StreamBroken("upstream_unavailable",
                        "The connection to Anthropic was interrupted; the answer is incomplete. Try again.")


def _error_body(exc: BaseException) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def _error_type(exc: BaseException) -> str | None:
    return _error_body(exc).get("type")


def _message(exc: BaseException) -> str:
    message = _error_body(exc).get("message") or type(exc).__name__
    return str(message)[:300]


def _retry_after(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(1, int(float(value))) if value else None
    except ValueError:
        return None
