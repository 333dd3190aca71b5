"""Lambda tasks of the optimisation state machine (``statemachines/optimize.asl.json``).

Thin wrappers over :mod:`capandex.research.jobs`, the steps ``capandex serve`` runs in a thread:
plan → fetch the missing candle chunks (inline Map) → prepare → [batch (Distributed Map) →
collect] until done → reduce; any failure → fail. Errors are raised unchanged: the state
machine's ``Retry`` re-invokes a task for Lambda's own errors (``Lambda.Unknown`` included: a
batch that ran out of memory or time runs again, and its result key is the same, so it is never
counted twice), and its ``Catch`` hands every other failure to :func:`fail`, which reports
Capandex errors by message and hides bugs.
"""

from __future__ import annotations

import uuid
from typing import Any

from capandex.research import jobs
from capandex.runtime import lambda_entry
from capandex.steperrors import reason_from_step_error

task = lambda_entry("optimize", correlation=lambda event: event.get("optimizationId"), requires=("data_bucket",),
                    traced=True)


def _ids(event: dict[str, Any]) -> tuple[str, uuid.UUID]:
    return event["optimizationId"], uuid.UUID(event["userId"])


@task
def plan(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.plan_job(*_ids(event))


@task
def fetch_chunk(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.fetch_chunk_job(*_ids(event), int(event["start"]))


@task
def prepare(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.prepare_job(*_ids(event))


@task
def batch(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.batch_job(event)


@task
def collect(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.collect_job(*_ids(event), int(event["round"]))


@task
def reduce(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.reduce_job(*_ids(event))


@task
def fail(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """``event["error"]`` is Step Functions' ``{"Error", "Cause"}``; only Capandex errors' messages
    reach the user (:func:`capandex.steperrors.reason_from_step_error`)."""
    return jobs.fail_job(*_ids(event), reason_from_step_error(event.get("error") or {}, "optimisation"))
