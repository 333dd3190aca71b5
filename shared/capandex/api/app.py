"""The app factory every function uses, so all of them answer errors the same way.

``create_app`` installs:
- one renderer for :class:`~capandex.errors.CapandexError` and for FastAPI's own request
  validation, HTTP and unknown-route errors, all as ``{"error": {"code", "message", "details"?}}``;
- a catch-all that logs the bug once (one ERROR record, the correlation id, one traceback) and
  answers a bare 500 (no trace); our own 500-class errors likewise keep their operator detail in
  the log;
- a request body limit enforced while the body streams in (``Content-Length`` can lie), and a
  400 for URLs carrying a NUL (which Postgres cannot store, so no id or filter could match);
- structured access logging with a correlation id (API Gateway's request id when there is one),
  webhook tokens taken out of the logged path.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from capandex.api.openapi import function_openapi
from capandex.errors import BadRequest, CapandexError, PayloadTooLarge, ValidationFailed
from capandex.logs import loggable_path

logger = logging.getLogger("capandex.api")

INTERNAL_MESSAGE = "Something went wrong on our side; it has been logged."

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
              415: "unsupported_media_type", 429: "rate_limited"}


def error_response(exc: CapandexError) -> JSONResponse:
    """``exc`` as its JSON error body, with its status and headers (e.g. ``Retry-After``)."""
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)


def _field_path(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts)


def _error_message(error: dict[str, Any]) -> str:
    """pydantic's message for one error, never repeating the input: the body is rendered field +
    message only (``input`` is dropped), and a custom validator's message that quotes the value
    (``ValueError(f"bad key {v}")``) is replaced, since the value may be a secret (an API key)."""
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    # pydantic prefixes a validator's own message with "Value error, "; the field says enough
    message, value = str(error.get("msg")).removeprefix("Value error, "), error.get("input")
    if isinstance(value, str) and len(value) >= 4 and value in message:
        return "invalid value"
    return message


def _validation_error(exc: RequestValidationError, content_type: str | None = None) -> CapandexError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return BadRequest("The request body is not valid JSON.")
    details = [{"field": _field_path(e.get("loc", ())), "message": _error_message(e)} for e in errors]
    whole_body = [e.get("type") for e in errors if tuple(e.get("loc", ())) == ("body",)]
    if whole_body and not _is_json(content_type) and exc.body not in (None, b""):
        # FastAPI reads a body as JSON only when it says so (a cross-site form cannot then pass for
        # JSON); `curl -d` sends form data unless told otherwise, so name the header that is missing
        sent = f"is {content_type.split(';')[0].strip()!r}" if content_type else "is missing"
        return BadRequest(f"Send the request body as JSON with the header Content-Type: application/json "
                          f"(this request's Content-Type {sent}).")
    if len(details) == 1 and details[0]["field"] == "body":
        kind = errors[0].get("type")
        if kind == "missing":
            return BadRequest("A JSON request body is required.")
        if kind in ("model_attributes_type", "model_type", "dict_type"):
            return BadRequest("The request body must be a JSON object.")
    fields = ", ".join(d["field"] for d in details)
    return ValidationFailed(f"Invalid input: {fields}.", details=details)


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this Content-Type as JSON (``application/json``, ``…+json``)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413, counting what actually arrives (and URLs that
    carry a NUL character with 400)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            # Postgres cannot hold a NUL in text: no id or filter containing one can match.
            await error_response(BadRequest("The URL contains a NUL character."))(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"The request body is larger than {self.max_bytes} bytes.")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        received, exceeded = 0, False

        async def limited_receive() -> Message:
            # Past the limit, tell the app the client went away (so it stops reading) and answer
            # 413 ourselves once it returns; whatever the app tries to send is dropped.
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # past the limit the app's error is the disconnect we faked: the 413 below answers it
            if not exceeded:
                raise
        if exceeded:
            await error_response(too_large)(scope, receive, send)


class AccessLogMiddleware:
    """One structured log line per request, with a correlation id echoed in ``x-correlation-id``;
    and the catch-all for bugs.

    A bug (an exception nothing else handled) is logged here once, at ERROR, with its traceback
    and the correlation id, and answered with a bare 500. It is not re-raised: Starlette's own
    catch-all re-raises so that the server logs it, and uvicorn (``capandex serve``) and Mangum
    (Lambda) would each write the same ~10 KB traceback again under another logger. Paths are
    logged with secrets taken out (:func:`capandex.logs.loggable_path`: a webhook's token is its
    credential).

    Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = _correlation_id(Request(scope))
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        started, status, responded = time.perf_counter(), 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        path = loggable_path(scope["path"])
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error", extra={"correlation_id": correlation_id, "method": scope["method"],
                                                       "path": path})
            status = 500
            if not responded:  # a streamed answer already under way can only be cut
                body = {"error": {"code": "internal_error", "message": INTERNAL_MESSAGE}}
                await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            logger.info("request", extra={
                "correlation_id": correlation_id, "method": scope["method"], "path": path,
                "status": status, "ms": round((time.perf_counter() - started) * 1000, 1),
                "user_id": scope.get("state", {}).get("user_id")})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CapandexError)
    async def _capandex_error(request: Request, exc: CapandexError) -> JSONResponse:
        if exc.status == 500:
            # Our own failure (e.g. the vault cannot open a secret): its message is for operators
            # (file paths, KMS error codes), so it goes to the log and the client gets the code.
            logger.error("server error: %s", exc.message,
                         extra={"correlation_id": _correlation_id(request), "code": exc.code})
            body = {"error": {"code": exc.code, "message": INTERNAL_MESSAGE}}
            return JSONResponse(body, status_code=500, headers=exc.headers)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc, request.headers.get("content-type")))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route."
        body = {"error": {"code": code, "message": message}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _correlation_id(request: Request) -> str:
    """The request's correlation id: the one :class:`AccessLogMiddleware` chose, else API
    Gateway's request id, an ``x-request-id`` header, or a new one."""
    chosen = request.scope.get("state", {}).get("correlation_id")
    if chosen:
        return chosen
    event = request.scope.get("aws.event") or {}
    context = event.get("requestContext") or {}
    return context.get("requestId") or request.headers.get("x-request-id") or str(uuid.uuid4())


def create_app(title: str, routers: Iterable[APIRouter], *, max_body_bytes: int | None = None,
               requires: Iterable[str] = ()) -> FastAPI:
    """A FastAPI app for one function (one endpoint group) with Capandex's error model.

    Creating it is the function's init (:func:`capandex.runtime.start`): logging is configured and,
    in AWS, the settings ``requires`` names (attribute names, e.g. ``"data_bucket"``) must be set
    besides the common ones, or the start-up stops with a message naming them.
    """
    from capandex.runtime import start

    settings = start(title, requires=requires)
    if max_body_bytes is None:
        max_body_bytes = settings.max_body_bytes
    # no docs pages per function: FastAPI's load from a CDN; `capandex serve` serves offline ones
    app = FastAPI(title=f"Capandex {title}", openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.state.service = title
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: function_openapi(app)  # type: ignore[method-assign]
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(AccessLogMiddleware)  # added last, so outermost: it logs the 413s too
    return app


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point for ``app`` (API Gateway REST/HTTP events through Mangum, with the
    invocation's correlation id and metrics: :func:`capandex.runtime.api_handler`)."""
    from capandex.runtime import api_handler

    return api_handler(app, app.state.service)
