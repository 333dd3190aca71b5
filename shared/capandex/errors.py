"""One error hierarchy for the whole backend.

Every failure a caller can act on is a subclass of :class:`CapandexError`. Each class carries the
HTTP status and the snake_case ``code`` of DESIGN.md §3, so one exception handler per app renders
``{"error": {"code", "message", "details"?}}`` and routes never need ``try/except``. Library users
(the CLI, notebooks) catch the same classes and print ``message``.

Messages are written for the person who made the request: say what is wrong and how to fix it,
and never include a secret (key, secret, passphrase, JWT).
"""

from __future__ import annotations

from typing import Any


class CapandexError(Exception):
    """Base class: something the caller can be told about. Subclasses set ``status`` and ``code``."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        """The JSON body of DESIGN.md §3."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(CapandexError):
    """The request is malformed or names something unsupported; fix the input and retry."""

    status, code = 400, "bad_request"


class ValidationFailed(CapandexError):
    """The input is well-formed but breaks a rule; ``details`` lists every field and why."""

    status, code = 422, "validation_error"


class Unauthorized(CapandexError):
    """Missing, expired, malformed or forged credentials: sign in again."""

    status, code = 401, "unauthorized"


class NotFound(CapandexError):
    """No such resource for this user (another user's resource is indistinguishable from none)."""

    status, code = 404, "not_found"


class Conflict(CapandexError):
    """The request conflicts with the current state (e.g. the flow is already running)."""

    status, code = 409, "conflict"


class QuotaExceeded(CapandexError):
    """The account already holds as many of these as a user may (the message gives the limit);
    delete one first."""

    status, code = 409, "quota_exceeded"


class PayloadTooLarge(CapandexError):
    """The body is larger than this endpoint accepts."""

    status, code = 413, "payload_too_large"


class RateLimited(CapandexError):
    """Too many requests; retry after ``Retry-After`` seconds."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, round(retry_after)))


class UpstreamError(CapandexError):
    """An exchange or upstream API answered with an error; retrying unchanged will likely fail again."""

    status, code = 502, "upstream_error"


class InvalidCredentials(CapandexError):
    """The exchange or upstream API rejected the stored or given credentials; update the key."""

    status, code = 400, "invalid_credentials"


class UpstreamUnavailable(CapandexError):
    """An exchange or upstream API could not be reached or timed out; retry later."""

    status, code = 503, "upstream_unavailable"


class Misconfigured(CapandexError):
    """The deployment lacks a setting or cannot read a secret it names; an operator must fix it.
    A 500: the message (which setting, which reference) is logged, the client gets the code."""

    status, code = 500, "misconfigured"


def field_problem(field: str, message: str, **extra: Any) -> dict[str, Any]:
    """One entry of ``details``: which field is wrong and why."""
    return {"field": field, "message": message, **extra}
