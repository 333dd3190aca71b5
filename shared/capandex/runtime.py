"""How every Lambda function starts and runs an invocation: one set-up for all of them.

At import (the function's *init*, which SnapStart snapshots), :func:`start`:

- configures logging (:func:`capandex.logs.configure_logging`: Powertools JSON, secrets scrubbed);
- reads the settings and stops the start-up if the function lacks one it needs
  (:meth:`capandex.config.Settings.require` with the function's ``requires``);
- registers the SnapStart hooks (:mod:`capandex.snapstart`) and, only when Lambda is about to
  snapshot (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``), imports what a first request would
  import on its own (:data:`FIRST_REQUEST_IMPORTS`): the snapshot keeps them, so a restored
  container's first request does not pay for them. On an ordinary init that would only move the
  cost from the first request to the init, so it is not done.

Around each invocation the entry points below stamp every log line with the invocation's
correlation id and Lambda context (function, request id, cold start) and record the metrics of
:mod:`capandex.telemetry`, written as EMF when the invocation ends:

- :func:`api_handler` — the API functions: API Gateway REST events through Mangum; the correlation
  id is API Gateway's request id (also echoed in ``x-correlation-id``);
- :func:`lambda_entry` — event functions (tick scheduler and worker; the state machines' tasks
  through :class:`capandex.steptasks.StateMachineTasks`), with an X-Ray trace through
  Powertools' Tracer when ``traced`` (exchange and AWS calls as subsegments);
- :class:`LambdaWebAdapterInvocations` — the chat function, which uvicorn serves behind the Lambda
  Web Adapter (no Python handler runs per invocation): the same per request, from the headers
  the adapter forwards.

The same handlers run in the tests, ``sam local invoke`` and AWS.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from capandex import telemetry
from capandex.logs import configure_logging, correlate

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from capandex.config import Settings

Event = dict[str, Any]
Handler = TypeVar("Handler", bound=Callable[..., Any])

_cold = True

#: Modules every function's first request in AWS imports lazily: the secrets' SSM client (boto3,
#: Powertools' parameters), the Postgres driver (psycopg; SQLAlchemy's dialect for it is already
#: imported with the schema), anyio's worker threads (FastAPI runs sync routes there). Imported
#: only: no client or connection is created.
FIRST_REQUEST_IMPORTS = ("boto3", "aws_lambda_powertools.utilities.parameters", "psycopg",
                         "anyio._backends._asyncio")


def start(service: str, *, requires: Iterable[str] = ()) -> Settings:
    """The function's init. Raises :class:`~capandex.errors.Misconfigured` naming what is missing."""
    from capandex import snapstart
    from capandex.config import get_settings

    configure_logging()
    settings = get_settings()
    settings.require(*requires)
    snapstart.register()
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        import importlib

        for module in FIRST_REQUEST_IMPORTS:
            importlib.import_module(module)
    return settings


def begin_invocation(correlation_id: str | None, context: Any = None, **keys: Any) -> None:
    """Stamp the log lines of the invocation that starts now (``context``: Lambda's, if any)."""
    global _cold
    cold, _cold = _cold, False
    if context is not None:
        keys.update(function_name=getattr(context, "function_name", None),
                    function_request_id=getattr(context, "aws_request_id", None))
    correlate(correlation_id, cold_start=cold, **keys)


def api_handler(app: FastAPI, service: str) -> Callable[[Event, Any], dict[str, Any]]:
    """The Lambda entry point of an API function: API Gateway REST (and HTTP) events through Mangum."""
    from mangum import Mangum

    adapter = Mangum(app, lifespan="off")

    def handler(event: Event, context: Any) -> dict[str, Any]:
        begin_invocation((event.get("requestContext") or {}).get("requestId"), context)
        # Mangum runs each event on the thread's current loop, which it looks up once at start;
        # anything that ran ``asyncio.run`` in between (a CLI pass, a test) leaves none set.
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            asyncio.set_event_loop(asyncio.new_event_loop())
        with telemetry.recording(service):
            return adapter(event, context)

    return handler


def lambda_entry(service: str, *, correlation: Callable[[Event], str | None] = lambda _e: None,
                 requires: Iterable[str] = (), traced: bool = False) -> Callable[[Handler], Handler]:
    """Decorate an event function's handler; the function's init (:func:`start`) runs here.

    Args:
        service: the metrics' ``service`` dimension and the log lines' ``function`` key.
        correlation: the event's correlation id (the SQS worker sets one per record itself).
        requires: settings the function needs in AWS besides :data:`~capandex.config.AWS_REQUIRED`.
        traced: wrap in Powertools' Tracer (X-Ray; off outside Lambda and under ``sam local``).
    """
    start(service, requires=requires)

    def decorate(fn: Handler) -> Handler:
        inner: Callable[..., Any] = fn
        if traced:
            from aws_lambda_powertools import Tracer

            inner = Tracer(service=service).capture_lambda_handler(fn)

        @functools.wraps(fn)
        def handler(event: Event, context: Any = None) -> Any:
            begin_invocation(correlation(event), context, function=service)
            with telemetry.recording(service):
                return inner(event, context)

        return handler  # type: ignore[return-value]

    return decorate


class LambdaWebAdapterInvocations:
    """ASGI middleware for an app the Lambda Web Adapter serves: each request is one invocation.

    The adapter forwards API Gateway's request context in ``x-amzn-request-context`` and Lambda's
    context in ``x-amzn-lambda-context`` (JSON). The request context is also put where Mangum
    puts the event (``scope["aws.event"]``), so the app's access log finds the same correlation id
    under either entry point. Outside Lambda (``capandex serve``) the headers are absent and the
    middleware only passes requests through.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service
        self.in_lambda = "AWS_LAMBDA_FUNCTION_NAME" in os.environ

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.in_lambda:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_context = _json_header(headers, b"x-amzn-request-context")
        lambda_context = _json_header(headers, b"x-amzn-lambda-context")
        scope.setdefault("aws.event", {"requestContext": request_context})
        begin_invocation(request_context.get("requestId"), None,
                         function_request_id=lambda_context.get("request_id"))
        with telemetry.recording(self.service):
            await self.app(scope, receive, send)


def _json_header(headers: dict[bytes, bytes], name: bytes) -> dict[str, Any]:
    try:
        value = json.loads(headers.get(name, b"{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
