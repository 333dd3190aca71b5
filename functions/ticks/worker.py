"""Tick worker Lambda: an SQS batch of ticks; failed records are reported for redelivery.

Each record's log lines carry its SQS message id as the correlation id (set per record by
:func:`capandex.live.ticks.handle_batch`).
"""

from __future__ import annotations

from typing import Any

from capandex.runtime import lambda_entry


@lambda_entry("ticks-worker", requires=("data_bucket",), traced=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from capandex.live.ticks import handle_batch

    # Lambda's clock: records left when the invocation is nearly out of time are redelivered untouched
    return handle_batch(event, remaining_ms=getattr(context, "get_remaining_time_in_millis", None))
