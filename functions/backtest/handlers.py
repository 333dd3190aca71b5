"""Lambda tasks of the backtest state machine (``statemachines/backtest.asl.json``).

Thin wrappers over :mod:`capandex.backtests.jobs`, the same steps ``capandex serve`` runs in a
thread: plan → fetch one chunk (the Map's item) → run → (on any failure) mark failed. Exchange
reads inside a task already retried (``capandex.exchanges.retry``, background patience); errors
are raised unchanged, the state machine's ``Retry`` re-invokes a task only for Lambda's own
errors, and its ``Catch`` hands every other failure to :func:`fail`, which reports Capandex errors
by message and hides bugs (:mod:`capandex.steptasks`).
"""

from __future__ import annotations

from typing import Any

from capandex.backtests import jobs
from capandex.steptasks import StateMachineTasks

tasks = StateMachineTasks("backtest", id_key="backtestId", what="backtest")


@tasks
def plan(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.plan_job(*tasks.ids(event))


@tasks
def fetch_chunk(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.fetch_chunk_job(*tasks.ids(event), int(event["start"]), float(event.get("progressStep", 0.0)))


@tasks
def run(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    result = jobs.run_job(*tasks.ids(event))
    return {"backtestId": result["backtestId"], "status": result["status"]}  # the result itself is in S3


@tasks
def fail(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.fail_job(*tasks.ids(event), tasks.failure_reason(event))
