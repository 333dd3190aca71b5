"""Where ticks come from: SQS in AWS, an in-process pass locally.

* :func:`schedule` — the scheduler Lambda's body: due ticks → SQS ``SendMessageBatch`` (10 per call).
* :func:`handle_batch` — the worker Lambda's body: one tick per SQS record; records whose tick
  failed transiently are returned as ``batchItemFailures`` so only they are redelivered
  (``ReportBatchItemFailures``). A tick that failed for good (:data:`.worker.PERMANENT_ERRORS`:
  recorded by the worker, which returns ``failed``) and a malformed message are consumed.
* :func:`run_pass` — scheduler then worker in this process (``capandex tick``; ``--at`` replays a
  moment in the past for paper executions); :func:`run_local_pass` is what ``capandex serve``
  calls once a minute.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict
from typing import Any

from capandex import timeutil
from capandex.errors import CapandexError
from capandex.exchanges.limits import key_limit
from capandex.exchanges.registry import active_ccxt_ids
from capandex.live.scheduler import due_ticks, spread
from capandex.live.worker import CandleSource, GatewayFactory, TickOutcome, process_tick
from capandex.logs import set_correlation_id
from capandex.telemetry import Metric, count

log = logging.getLogger("capandex.ticks")


def schedule(*, now_ms: int | None = None, queue_url: str | None = None, sqs: Any = None) -> int:
    """Enqueue one message per due tick, the live ticks of one exchange key spread over the minute
    (:func:`.scheduler.spread`); returns how many were sent."""
    from capandex.config import get_settings
    from capandex.db.session import transaction

    queue_url = queue_url or get_settings().tick_queue_url
    if not queue_url:
        raise RuntimeError("CAPANDEX_TICK_QUEUE_URL is not set")
    with transaction() as conn:
        messages = due_ticks(conn, timeutil.now_ms() if now_ms is None else now_ms)
        ccxt_ids = active_ccxt_ids(conn)
    delays = spread(messages, lambda exchange: key_limit(ccxt_ids.get(exchange, exchange)))
    if sqs is None:
        import boto3

        sqs = boto3.client("sqs")
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        entries = [{"Id": str(i), "DelaySeconds": delay, "MessageBody": json.dumps(
            {k: m[k] for k in ("executionId", "candleMs", "mode")})}
            for i, (m, delay) in enumerate(zip(chunk, delays[start:start + 10], strict=True))]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed") or []
        if failed:  # the next minute's pass sends them again (same candle, same message)
            log.warning("enqueue failed", extra={"count": len(failed)})
    return len(messages)


def handle_batch(event: dict[str, Any], *, candles: CandleSource | None = None,
                 gateway: GatewayFactory | None = None) -> dict[str, Any]:
    """Process an SQS batch; ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` lists
    the records to redeliver: those whose tick raised (a transient failure, or a crash). Each
    record's log lines carry its message id as the correlation id."""
    failures = []
    for record in event.get("Records", []):
        set_correlation_id(record.get("messageId"))
        try:
            body = json.loads(record["body"])
            outcome = process_tick(body["executionId"], int(body["candleMs"]), candles=candles, gateway=gateway)
            log.info("tick", extra=asdict(outcome))
        except (KeyError, ValueError, TypeError):
            log.error("malformed tick message dropped", extra={"message_id": record.get("messageId")})
        except CapandexError as exc:
            log.warning("tick will be retried", extra={"message_id": record["messageId"], "code": exc.code})
            failures.append({"itemIdentifier": record["messageId"]})
        except Exception:
            log.exception("tick crashed", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
    count(Metric.TICKS_RETRIED, len(failures))
    count(Metric.TICKS_PROCESSED, len(event.get("Records", [])) - len(failures))
    return {"batchItemFailures": failures}


def run_pass(at: dt.datetime | None = None, *, candles: CandleSource | None = None,
             gateway: GatewayFactory | None = None) -> list[TickOutcome]:
    """One scheduler pass, then every due tick in-process. With ``at`` (a past moment), only paper
    executions tick, as if the clock read ``at``. Failed ticks are reported, not raised."""
    from capandex.db.session import transaction

    now_ms = timeutil.now_ms() if at is None else timeutil.epoch_ms(at)
    with transaction() as conn:
        messages = due_ticks(conn, now_ms, paper_only=at is not None)
    outcomes = []
    for message in messages:
        try:
            outcomes.append(process_tick(message["executionId"], message["candleMs"], candles=candles,
                                         gateway=gateway))
        except CapandexError as exc:
            outcomes.append(TickOutcome(message["executionId"], message["candleMs"], "retry", error=exc.message))
    return outcomes


def run_local_pass() -> list[TickOutcome]:
    """The pass ``capandex serve`` runs once a minute on the embedded defaults."""
    return run_pass()
