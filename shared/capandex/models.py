"""Base classes of the JSON models at the edges: request bodies, response bodies and the two
answers every resource shares (``{"success": true}``, ``{"deleted": true}``).

On the ground floor, beside :mod:`capandex.errors` and :mod:`capandex.safejson`, so each
subsystem's ``models.py`` builds on them without importing the FastAPI layer (:mod:`capandex.api`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from capandex import safejson
from capandex.errors import ValidationFailed, field_problem


def schema_examples(*examples: Callable[[], dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` giving a request model ``examples`` (what the OpenAPI shows, and the
    bodies Schemathesis's examples phase sends). Each example is built when the document is, not
    at import: one may come from a module that is heavy to import (the engine's example flow)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["examples"] = [example() for example in examples]

    return extra


class RequestModel(BaseModel):
    """A request body: unknown fields are an error (a typo must not be silently ignored), and
    nothing anywhere in it (free-form node data included) may be what the database or a JSON
    client cannot hold: NUL characters, lone surrogates, NaN/Infinity, integers past 2**53 - 1,
    nesting deeper than :data:`capandex.safejson.MAX_DEPTH` (see :mod:`capandex.safejson`).

    That check raises :class:`ValidationFailed` itself rather than a pydantic error, so the
    422's ``details`` name the exact place (``nodes.0.data.period``), not just the top field.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _storable_json(cls, data: Any) -> Any:
        problem = safejson.first_problem(data)
        if problem is not None:
            where, why = problem
            where = where or "body"
            raise ValidationFailed(f"Invalid input: {where}.", details=[field_problem(where, why)])
        return data


class ResponseModel(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


class Success(ResponseModel):
    """``{"success": true}``: the action was done (the reference's answer for updates and deletes)."""

    success: bool = True


class Deleted(ResponseModel):
    """``{"deleted": true}``: the resource is gone for good."""

    deleted: bool = True

