"""Routes of the account function (filled in by its subsystem's work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["account"])
