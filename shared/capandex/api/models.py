"""Base classes for request and response models."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class RequestModel(BaseModel):
    """A request body: unknown fields are an error (a typo must not be silently ignored), and no
    string anywhere in it may contain a NUL character (Postgres cannot store one in text or jsonb,
    so it would otherwise surface as a 500 on the way into the database)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


class ResponseModel(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


class Success(ResponseModel):
    """``{"success": true}``: the action was done (the reference's answer for updates and deletes)."""

    success: bool = True


class Deleted(ResponseModel):
    """``{"deleted": true}``: the resource is gone for good."""

    deleted: bool = True


def iso_utc(value: dt.datetime | None) -> str | None:
    """``2025-01-15T10:30:00Z``: the timestamp format of the API reference."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
