"""Where ticks come from: SQS in AWS, an in-process pass locally.

* :func:`schedule` — the scheduler Lambda's body: due ticks → SQS ``SendMessageBatch`` (10 per call).
* :func:`handle_batch` — the worker Lambda's body: one tick per SQS record; records whose tick
  failed transiently are returned as ``batchItemFailures`` so only they are redelivered
  (``ReportBatchItemFailures``). A tick that failed for good (:data:`.worker.PERMANENT_ERRORS`:
  recorded by the worker, which returns ``failed``) and a malformed message are consumed, and so is
  a tick whose history is still downloading (:class:`~capandex.marketdata.candles.FillTimeUp`): the
  scheduler sends its execution a tick every minute until it has caught up, so a redelivery (after
  the queue's 6-minute visibility timeout) would only add a second download of the same chunks and,
  after five, a message in the dead-letter queue with no flow at fault. The
  batch never runs into the Lambda's timeout (which would redeliver every record, the finished
  ones too): a record is started only while :data:`RECORD_RESERVE_S` are left, the rest are
  reported for redelivery untouched, and the key budget's waits stop short of the deadline
  (:func:`.budget.until`).
* :func:`run_pass` — scheduler then worker in this process (``capandex tick``; ``--at`` replays a
  moment in the past for paper executions); :func:`run_local_pass` is what ``capandex serve``
  calls once a minute.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from capandex import timeutil
from capandex.errors import CapandexError
from capandex.exchanges.limits import key_limit
from capandex.exchanges.registry import active_ccxt_ids
from capandex.live import budget
from capandex.live.intents import TickOutcome
from capandex.live.orders import GatewayFactory
from capandex.live.scheduler import due_ticks, spread
from capandex.live.worker import CandleSource, process_tick
from capandex.logs import set_correlation_id
from capandex.marketdata.candles import FillTimeUp
from capandex.telemetry import Metric, count

log = logging.getLogger("capandex.ticks")

#: SendMessageBatch calls in flight at once: 10,000 due ticks are 1,000 calls of ~15 ms, and one after
#: another the last flow's tick was enqueued ~15 s after the first's
SEND_THREADS = 10

#: seconds of the invocation a record needs left to be started: one key-budget wait
#: (:data:`.budget.MAX_WAIT_S`) and the request and bookkeeping after it
RECORD_RESERVE_S = budget.MAX_WAIT_S + budget.FINISH_RESERVE_S


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
    batches = [_entries(messages[i:i + 10], delays[i:i + 10]) for i in range(0, len(messages), 10)]

    def send(entries: list[dict[str, Any]]) -> int:
        return len(sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed") or [])

    with ThreadPoolExecutor(SEND_THREADS) as pool:
        calls = [pool.submit(send, entries) for entries in batches]
    errors = [error for call in calls if (error := call.exception()) is not None]
    failed = sum(len(entries) if call.exception() else call.result()
                 for entries, call in zip(batches, calls, strict=True))
    if failed:  # the next minute's pass sends them again (same candle, same message)
        log.warning("enqueue failed", extra={"count": failed, "calls_raised": len(errors)})
    if errors:  # the pass fails visibly, once every batch has been tried
        raise errors[0]
    return len(messages)


def _entries(messages: list[dict[str, Any]], delays: list[int]) -> list[dict[str, Any]]:
    """One ``SendMessageBatch``'s entries (at most 10)."""
    return [{"Id": str(i), "DelaySeconds": delay,
             "MessageBody": json.dumps({k: m[k] for k in ("executionId", "candleMs", "mode")})}
            for i, (m, delay) in enumerate(zip(messages, delays, strict=True))]


def handle_batch(event: dict[str, Any], *, remaining_ms: Callable[[], int] | None = None,
                 candles: CandleSource | None = None, gateway: GatewayFactory | None = None) -> dict[str, Any]:
    """Process an SQS batch; ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` lists
    the records to redeliver: those whose tick raised (a transient failure, or a crash), and those
    not started because less than :data:`RECORD_RESERVE_S` of the invocation was left
    (``remaining_ms``: Lambda's ``context.get_remaining_time_in_millis``; None: no deadline). Each
    record's log lines carry its message id as the correlation id."""
    deadline = None if remaining_ms is None else time.monotonic() + remaining_ms() / 1000
    records = event.get("Records", [])
    failures, deferred, waiting = [], 0, 0
    for record in records:
        set_correlation_id(record.get("messageId"))
        if deadline is not None and deadline - time.monotonic() < RECORD_RESERVE_S:
            deferred += 1
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        try:
            body = json.loads(record["body"])
            with budget.until(deadline):
                outcome = process_tick(body["executionId"], int(body["candleMs"]), candles=candles, gateway=gateway)
            log.info("tick", extra=asdict(outcome))
        except (KeyError, ValueError, TypeError):
            log.error("malformed tick message dropped", extra={"message_id": record.get("messageId")})
        except FillTimeUp as exc:  # consumed: the scheduler's next pass, a minute on, sends the tick again
            waiting += 1
            log.info("tick waits for its history to download", extra={"message_id": record["messageId"],
                                                                      "detail": exc.message})
        except CapandexError as exc:
            log.warning("tick will be retried", extra={"message_id": record["messageId"], "code": exc.code})
            failures.append({"itemIdentifier": record["messageId"]})
        except Exception:
            log.exception("tick crashed", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
    if deferred:
        log.warning("ticks deferred: the invocation is nearly out of time", extra={"count": deferred})
    count(Metric.TICKS_RETRIED, len(failures))
    count(Metric.TICKS_WAITING, waiting)
    count(Metric.TICKS_PROCESSED, len(records) - len(failures) - waiting)
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
