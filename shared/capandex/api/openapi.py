"""The OpenAPI documents: each function's, and the merged one ``capandex serve`` publishes.

FastAPI describes routes and their models; this module adds what it cannot know:

- **Errors.** Every error is ``{"error": {"code", "message", "details"?}}`` (:class:`ErrorResponse`),
  never FastAPI's ``{"detail": […]}``. Each operation documents the errors every route of its kind
  can answer (400/413/422 for input, 401/503 for sign-in, 500 for a bug) plus the ones its route
  declares with :func:`errors` (404, 409, 429, 502 …).
- **Security.** :mod:`capandex.api.deps` declares a bearer scheme (``Authorization: Bearer
  <access token>``, what ``capandex token`` prints) and the Supabase session cookie, so FastAPI
  marks every operation that needs the signed-in user; here the cookie gets its real name
  (``sb-<ref>-auth-token`` from ``SUPABASE_URL``, known only once settings are read).
- **One name, one schema.** Function documents are merged by :func:`merge_documents`, which
  refuses two different schemas under one component name (:class:`SchemaConflict`): a client
  generated from the merged document would otherwise get one of the two types silently wrong.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from capandex.models import ResponseModel

if TYPE_CHECKING:
    from fastapi import FastAPI

TITLE, VERSION = "Capandex API", "0.1.0"
SCHEMA_REF = "#/components/schemas/{model}"
COOKIE_SCHEME = "supabaseCookie"


class ErrorDetail(ResponseModel):
    """One problem with the input: which field and why (flow problems also name the node)."""

    model_config = ConfigDict(extra="allow")

    field: str = Field(description="dotted path of the field, e.g. settings.symbol or nodes")
    message: str = Field(description="why it is wrong (never the submitted value)")
    nodeId: str | None = Field(default=None, description="the flow node concerned (flow validation only)")
    row: int | None = Field(default=None, description="the candle row concerned (candle validation only)")


class ErrorBody(ResponseModel):
    code: str = Field(description="snake_case, stable: bad_request, validation_error, unauthorized, "
                                  "not_found, conflict, quota_exceeded, payload_too_large, rate_limited, "
                                  "upstream_error, invalid_credentials, upstream_unavailable, internal_error")
    message: str = Field(description="a sentence for the person who made the request")
    details: list[ErrorDetail] | None = Field(default=None, description="every problem, for validation errors")


class ErrorResponse(ResponseModel):
    """The body of every 4xx and 5xx answer (DESIGN.md §3)."""

    error: ErrorBody


#: what each error status means here, shown on every operation that can answer it
ERROR_STATUSES: dict[int, str] = {
    400: "Malformed input: a body that is not a JSON object, a NUL character, an unsupported exchange "
         "or symbol (`bad_request`), or credentials an exchange rejected (`invalid_credentials`).",
    401: "No session cookie or bearer token, or an expired, malformed or forged one (`unauthorized`).",
    404: "No such resource for this user; another user's resource is indistinguishable (`not_found`).",
    409: "The request conflicts with the current state (`conflict`), or the account already holds as many "
         "of these as a user may (`quota_exceeded`; the message gives the limit).",
    413: "The body is larger than this endpoint accepts (`payload_too_large`).",
    422: "Well-formed input that breaks a rule; `details` lists every field and why (`validation_error`).",
    429: "Too many requests; retry after `Retry-After` seconds (`rate_limited`).",
    500: "A bug on our side, logged with the `x-correlation-id` (`internal_error`); no detail is sent.",
    502: "The exchange or Anthropic answered with an error (`upstream_error`).",
    503: "An upstream (exchange, Anthropic, Supabase Auth) could not be reached or timed out "
         "(`upstream_unavailable`); retry later.",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


class SchemaConflict(ValueError):
    """Two documents define different schemas under one component name."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it answers beyond those of its kind."""
    return {status: _error_response(status) for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_STATUSES[status],
        "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model="ErrorResponse")}}}}
    if status == 429:
        response["headers"] = copy.deepcopy(RETRY_AFTER)
    return response


def error_schemas() -> dict[str, Any]:
    """:class:`ErrorResponse` and the models it nests, as component schemas."""
    schema = ErrorResponse.model_json_schema(ref_template=SCHEMA_REF, mode="serialization")
    nested = schema.pop("$defs", {})
    return {**nested, "ErrorResponse": schema}


def function_openapi(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI document with Capandex's errors and security (cached on the app; the
    cookie's name follows the current settings)."""
    from capandex.config import get_settings

    document = app.openapi_schema or _build(app)
    cookie = document["components"].get("securitySchemes", {}).get(COOKIE_SCHEME)
    if cookie is not None:
        cookie["name"] = get_settings().auth_cookie_name
    return document


def _build(app: FastAPI) -> dict[str, Any]:
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(title=app.title, version=VERSION, routes=app.routes, description=app.description)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's {"detail": …}, never sent
        schemas.pop(name, None)
    for name, schema in error_schemas().items():
        _add_schema(schemas, name, schema)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            _document_errors(operation)
    app.openapi_schema = document
    return document


def _document_errors(operation: dict[str, Any]) -> None:
    """Add the error responses every operation of this kind can answer (see the module doc)."""
    responses = operation.setdefault("responses", {})
    statuses = {500}
    if operation.get("parameters") or "requestBody" in operation:
        statuses |= {400, 422}  # a NUL in the URL is 400 everywhere; a rule broken is 422
    if "requestBody" in operation:
        statuses.add(413)
    if operation.get("security"):
        statuses |= {401, 503}  # 503: the JWKS or Supabase Auth could not be reached
    else:
        operation["security"] = []  # say so: no credentials (e.g. a webhook, whose token is in the path)
    for status in statuses:
        key = str(status)
        if key not in responses or "HTTPValidationError" in json.dumps(responses[key]):
            responses[key] = _error_response(status)
    operation["responses"] = dict(sorted(responses.items()))


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any], source: str = "") -> None:
    existing = schemas.get(name)
    if existing is not None and _canonical(existing) != _canonical(schema):
        raise SchemaConflict(f"two different schemas are named {name!r}{source}: rename one model")
    schemas[name] = schema


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True)


def merge_documents(documents: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One document from every function's (``(name, document)`` pairs).

    Raises:
        SchemaConflict: two documents define different schemas under one name, or one path and
            method twice.
    """
    merged: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": TITLE, "version": VERSION},
                              "paths": {}, "components": {"schemas": {}, "securitySchemes": {}}}
    for source, document in documents:
        document = copy.deepcopy(document)  # the merged document shares nothing with the functions'
        for path, operations in document.get("paths", {}).items():
            target = merged["paths"].setdefault(path, {})
            for method, operation in operations.items():
                if method in target:
                    raise SchemaConflict(f"{method.upper()} {path} is defined twice (again in {source})")
                target[method] = operation
        components = document.get("components", {})
        for name, schema in components.get("schemas", {}).items():
            _add_schema(merged["components"]["schemas"], name, schema, f" (again in {source})")
        for name, scheme in components.get("securitySchemes", {}).items():
            _add_schema(merged["components"]["securitySchemes"], name, scheme, f" (again in {source})")
    return merged
