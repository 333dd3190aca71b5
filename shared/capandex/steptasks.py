"""What the Lambda tasks of every state machine share (``functions/backtest``, ``functions/optimize``).

A state machine's tasks receive the run's id and the user's id in their event and call the
matching step of a jobs module (:mod:`capandex.backtests.jobs`, :mod:`capandex.research.jobs`).
:class:`StateMachineTasks` wires them the same way: the function's init through
:func:`capandex.runtime.lambda_entry` (the data bucket required, an X-Ray trace), the run's id as
every log line's correlation id (so one run's steps can be followed across its functions), and
the sentence a failed run is stored with.

That sentence comes from what a ``Catch`` hands the fail task: Step Functions' ``{"Error",
"Cause"}``, where a Lambda error's ``Cause`` is JSON with ``errorType`` (the exception's class
name) and ``errorMessage``. Only Capandex errors' messages reach the user (they are written for
them, :mod:`capandex.errors`); a time-out, a task that ran out of memory or time, and a bug each
get a fixed sentence, so no stack trace or internal detail leaks into a stored status.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from capandex.errors import CapandexError
from capandex.runtime import lambda_entry

Task = TypeVar("Task", bound=Callable[..., Any])


class StateMachineTasks:
    """The tasks of one state machine: ``service`` names the function (metrics, logs), ``id_key``
    the event's run id (``backtestId``), ``what`` the run in a user's words ("backtest").

    >>> tasks = StateMachineTasks("backtest", id_key="backtestId", what="backtest")
    >>> @tasks
    ... def plan(event, _context=None):
    ...     return jobs.plan_job(*tasks.ids(event))          # doctest: +SKIP
    """

    def __init__(self, service: str, *, id_key: str, what: str) -> None:
        self.id_key, self.what = id_key, what
        self._entry = lambda_entry(service, correlation=lambda event: event.get(id_key), requires=("data_bucket",),
                                   traced=True)

    def __call__(self, task: Task) -> Task:
        return self._entry(task)

    def ids(self, event: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
        """The run's id and its user's, as every task's event carries them."""
        return str(event[self.id_key]), uuid.UUID(str(event["userId"]))

    def failure_reason(self, event: Mapping[str, Any]) -> str:
        """The sentence the fail task stores, from the error in its event (``event["error"]``)."""
        return reason_from_step_error(event.get("error") or {}, self.what)


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
