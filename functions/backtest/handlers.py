"""Lambda tasks of the backtest state machine (``statemachines/backtest.asl.json``).

Thin wrappers over :mod:`capandex.backtests.jobs`, the same steps ``capandex serve`` runs in a
thread: plan → fetch one chunk (the Map's item) → run → (on any failure) mark failed. Exchange
reads inside a task already retried (``capandex.exchanges.retry``, background patience); errors
are raised unchanged, the state machine's ``Retry`` re-invokes a task only for Lambda's own
errors, and its ``Catch`` hands every other failure to :func:`fail`, which reports Capandex errors
by class name and message.

Every task's log lines carry the backtest id as their correlation id, so one backtest's steps
can be followed across the four functions.
"""

from __future__ import annotations

import uuid
from typing import Any

from capandex.backtests import jobs
from capandex.runtime import lambda_entry
from capandex.steperrors import reason_from_step_error

task = lambda_entry("backtest", correlation=lambda event: event.get("backtestId"), requires=("data_bucket",),
                    traced=True)


def _ids(event: dict[str, Any]) -> tuple[str, uuid.UUID]:
    return event["backtestId"], uuid.UUID(event["userId"])


@task
def plan(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.plan_job(*_ids(event))


@task
def fetch_chunk(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.fetch_chunk_job(*_ids(event), int(event["start"]), float(event.get("progressStep", 0.0)))


@task
def run(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    result = jobs.run_job(*_ids(event))
    return {"backtestId": result["backtestId"], "status": result["status"]}  # the result itself is in S3


@task
def fail(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """``event["error"]`` is Step Functions' ``{"Error", "Cause"}``; a Lambda error's Cause is JSON
    with ``errorType`` and ``errorMessage``. Only Capandex errors' messages reach the user."""
    return jobs.fail_job(*_ids(event), reason_from(event.get("error") or {}))


def reason_from(error: dict[str, Any]) -> str:
    return reason_from_step_error(error, "backtest")
