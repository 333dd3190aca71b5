"""What a Step Functions ``Catch`` hands a state machine's fail task, told to the user.

The error is Step Functions' ``{"Error", "Cause"}``; a Lambda error's ``Cause`` is JSON with
``errorType`` (the exception's class name) and ``errorMessage``. Only Capandex errors' messages
reach the user (they are written for them, :mod:`capandex.errors`); a time-out, a task that ran
out of memory or time, and a bug each get a fixed sentence, so no stack trace or internal detail
leaks into a stored status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from capandex.errors import CapandexError


def reason_from_step_error(error: Mapping[str, Any], what: str) -> str:
    """The sentence a user reads for a failed ``what`` ("backtest", "optimisation")."""
    name = str(error.get("Error", ""))
    try:
        cause = json.loads(error.get("Cause") or "{}")
    except (TypeError, ValueError):
        cause = {}
    known = {cls.__name__ for cls in _subclasses(CapandexError)}
    if isinstance(cause, dict) and cause.get("errorType") in known and cause.get("errorMessage"):
        return str(cause["errorMessage"])
    if name == "States.Timeout":
        return f"The {what} took too long and was stopped."
    if name == "Lambda.Unknown":  # Lambda's name for a task that ran out of memory or time
        return f"The {what} ran out of memory or time and was stopped; try a shorter range."
    if name == "States.ExceedToleratedFailureThreshold":  # a Distributed Map item failed after its retries
        return f"Part of the {what} kept failing after retries and it was stopped; try a shorter range."
    return f"The {what} failed because of an internal error; it has been logged."


def _subclasses(cls: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out
