"""The figures operators watch, as CloudWatch metrics (Powertools Metrics, embedded metric format).

Domain code counts what happened with :func:`count`; nothing is sent from there. While a Lambda
invocation runs (:mod:`capandex.runtime` opens a :func:`recording` around it) the counts are kept
in memory, and at its end they are written as EMF JSON lines on stdout, which CloudWatch turns into
metrics in the ``Capandex`` namespace (no API call, no extra latency). Outside an invocation
(``capandex serve``, the CLI, most tests) :func:`count` does nothing, so a long-running process
accumulates nothing.

Every metric carries the ``service`` dimension (the function group: ``engine``, ``ticks-worker``…);
:data:`Metric.UPSTREAM_ERRORS` also carries ``upstream`` (``binance``, ``anthropic``…).

This module imports nothing heavy: the domain modules that count are on cold-start paths.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

NAMESPACE = "Capandex"


class Metric(StrEnum):
    """What is counted (unit: count)."""

    #: SQS tick messages the worker finished (done, skipped, duplicate or failed for good)
    TICKS_PROCESSED = "TicksProcessed"
    #: tick messages handed back to SQS for redelivery (a transient failure, a crash, or not started
    #: because the invocation was nearly out of time)
    TICKS_RETRIED = "TicksRetried"
    #: tick messages of executions whose history is still downloading (consumed: the next minute's
    #: tick goes on; a new 1m execution with a long warm-up waits a few minutes)
    TICKS_WAITING = "TicksWaiting"
    #: live orders the exchange accepted (or that were found by their client order id)
    ORDERS_PLACED = "OrdersPlaced"
    #: live orders refused for good or whose outcome stayed unknown
    ORDERS_FAILED = "OrdersFailed"
    #: backtests that completed (in the request or in the state machine)
    BACKTESTS_RUN = "BacktestsRun"
    #: backtests that ended ``failed``
    BACKTESTS_FAILED = "BacktestsFailed"
    #: an exchange or Anthropic failed, timed out or rate-limited us (dimension ``upstream``)
    UPSTREAM_ERRORS = "UpstreamErrors"


Key = tuple[Metric, tuple[tuple[str, str], ...]]

_lock = threading.Lock()
_counts: Counter[Key] | None = None  # None: not inside an invocation


def count(metric: Metric, value: int = 1, **dimensions: str) -> None:
    """Add ``value`` to ``metric`` (with extra ``dimensions``) for the running invocation, if any."""
    with _lock:
        if _counts is not None:
            _counts[(metric, tuple(sorted(dimensions.items())))] += value


@contextmanager
def recording(service: str) -> Iterator[Counter[Key]]:
    """Collect counts while the block runs, then write them as EMF (one document per dimension set).

    Yields the live counts (tests read them). The counts are written even when the block raises: a
    crashed invocation's failures are the figures operators most need. A recording opened inside
    another one adds to the outer one, which alone writes them.
    """
    global _counts
    with _lock:
        outer = _counts
        counts = outer if outer is not None else Counter()
        _counts = counts
    try:
        yield counts
    finally:
        if outer is None:
            with _lock:
                _counts = None
            _flush(service, counts)


def _flush(service: str, counts: Counter[Key]) -> None:
    if not counts:
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    by_dimensions: dict[tuple[tuple[str, str], ...], list[tuple[Metric, int]]] = {}
    for (metric, dimensions), value in counts.items():
        by_dimensions.setdefault(dimensions, []).append((metric, value))
    for dimensions, values in sorted(by_dimensions.items()):
        metrics = EphemeralMetrics(namespace=NAMESPACE, service=service)
        for name, label in dimensions:
            metrics.add_dimension(name=name, value=label)
        for metric, value in values:
            metrics.add_metric(name=metric.value, unit=MetricUnit.Count, value=value)
        metrics.flush_metrics()
