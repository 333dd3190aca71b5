"""Base classes for request and response models."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """A request body: unknown fields are an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


def iso_utc(value: dt.datetime | None) -> str | None:
    """``2025-01-15T10:30:00Z``: the timestamp format of the API reference."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
