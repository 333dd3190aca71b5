"""Lambda tasks of the optimisation state machine (``statemachines/optimize.asl.json``).

Thin wrappers over :mod:`capandex.research.jobs`, the steps ``capandex serve`` runs in a thread:
plan → fetch the missing candle chunks (inline Map) → prepare → [batch (Distributed Map) →
collect] until done → reduce; any failure → fail. Errors are raised unchanged: the state
machine's ``Retry`` re-invokes a task for Lambda's own errors (``Lambda.Unknown`` included: a
batch that ran out of memory or time runs again, and its result key is the same, so it is never
counted twice), and its ``Catch`` hands every other failure to :func:`fail`, which reports
Capandex errors by message and hides bugs (:mod:`capandex.steptasks`).
"""

from __future__ import annotations

from typing import Any

from capandex.research import jobs
from capandex.steptasks import StateMachineTasks

tasks = StateMachineTasks("optimize", id_key="optimizationId", what="optimisation")


@tasks
def plan(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.plan_job(*tasks.ids(event))


@tasks
def fetch_chunk(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.fetch_chunk_job(*tasks.ids(event), int(event["start"]))


@tasks
def prepare(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.prepare_job(*tasks.ids(event))


@tasks
def batch(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.batch_job(event)


@tasks
def collect(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.collect_job(*tasks.ids(event), int(event["round"]))


@tasks
def reduce(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.reduce_job(*tasks.ids(event))


@tasks
def fail(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    return jobs.fail_job(*tasks.ids(event), tasks.failure_reason(event))
