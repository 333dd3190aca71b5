"""Submitting and reading backtests: validate, decide where to run, report.

:func:`submit` validates the request (dates, flow, exchange, symbol), plans the candle chunks and
sizes the work. The engine's share is the flow's nodes × candles (:mod:`capandex.engine.cost`): a
run whose evaluation would need more memory than the engine may use is refused with a 422 before
anything is fetched. When the estimate (candle pages still to fetch at the exchange's pace, plus
the engine's time) fits :attr:`capandex.config.Settings.backtest_sync_budget_s`, it runs the
backtest at once through :mod:`capandex.backtests.core` with the plan, the validated flow and the
exchange client it already holds, and returns a completed :class:`Submission`; anything larger is
started in the background (a thread pool under ``capandex serve``, the Step Functions state
machine in AWS: :mod:`capandex.backtests.jobs`) and returned as running. The route chooses the HTTP
status (200 or 202) from the :class:`Submission`.

A user may have :data:`MAX_RUNNING_PER_USER` backtests running in the background at once, and
:data:`MAX_IN_REQUEST_PER_USER` running inside requests; one more of either is a 429 with
``Retry-After``. The request budget bounds each in-request run, not how many run at once: sixty
concurrent ones from one user kept every worker thread of ``capandex serve`` busy for a minute
(another user's ``GET /api/flows`` waited 42 s; on SQLite fourteen of them ended in 500s, the
database locked) — and in AWS each is a Lambda container of its own, paid for.
Under ``capandex serve`` the background pool takes users in turn
(:mod:`capandex.backtests.fairpool`), so nobody's backtest waits behind another user's queue.

A ``running`` backtest older than its deadline is reported (and stored) as failed by :func:`get`,
so nothing stays ``running`` forever even if its worker died.

No database transaction is held while candles download or the engine runs: each step opens its
own short one (a long transaction would pin a pooled Postgres connection and, on SQLite, the
write lock).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from capandex.backtests import core, jobs
from capandex.backtests import repository as repo
from capandex.backtests.fairpool import FairPool
from capandex.backtests.models import BacktestCreate
from capandex.config import get_settings
from capandex.db.quota import lock_owner
from capandex.db.schema import backtests
from capandex.db.session import transaction
from capandex.errors import Conflict, NotFound, RateLimited, UpstreamUnavailable, ValidationFailed, field_problem
from capandex.marketdata.chunks import timeframe_ms
from capandex.timeutil import epoch_ms, utcnow

if TYPE_CHECKING:  # capandex.marketdata imports numpy: keep the engine function's cold start lean
    from capandex.marketdata import BlobStore

logger = logging.getLogger("capandex.backtests")

#: the longest range, in candles (a leap year of 1m candles; ~5 years of 5m, unlimited-ish above)
MAX_CANDLES = 366 * 1440
#: the earliest instant a range may start at (exchanges count time in non-negative epoch ms)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Range:
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Submission:
    """What :func:`submit` did: ran the backtest to the end (``completed``; ``body`` is the result
    as ``GET`` shows it) or started it in the background (``body`` is its running status)."""

    backtest_id: str
    completed: bool
    body: dict[str, Any]


#: background backtests one user may have running (queued or computing) at once; a third is a 429
MAX_RUNNING_PER_USER = 2
#: the ``Retry-After`` of that 429, in seconds (a background year of minutes takes about this long
#: once its candles are cached)
BUSY_RETRY_AFTER_S = 30
#: backtests one user may have running inside requests at once (each takes up to the request budget)
MAX_IN_REQUEST_PER_USER = 3
#: the ``Retry-After`` of that 429, in seconds (an in-request run takes at most ~10 s)
REQUEST_BUSY_RETRY_AFTER_S = 5

#: A run inside the request dies with it (API Gateway gives up at 29 s, the function's timeout
#: follows): still ``running`` after this many seconds, it is reported failed, not left hanging.
IN_REQUEST_DEADLINE_S = 120

def parse_instant(text: str, field: str) -> dt.datetime:
    """An ISO 8601 date or date-time; naive values are UTC. :class:`ValidationFailed` naming ``field``."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValidationFailed(f"{field} is not an ISO 8601 date.",
                               details=[field_problem(field, "not an ISO 8601 date or date-time")]) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def validate_range(body: BacktestCreate, now: dt.datetime) -> Range:
    """The request's range in epoch ms; :func:`check_range` says what makes it sane."""
    return check_range(body.startDate, body.endDate, body.timeframe, now)


def check_range(start_text: str, end_text: str, timeframe: str, now: dt.datetime, *,
                fields: tuple[str, str] = ("startDate", "endDate"),
                max_candles: int | None = MAX_CANDLES) -> Range:
    """Dates sane: parseable, not before 1970 (exchanges take epoch ms), start < end, end not
    after ``now``, at most ``max_candles`` candles of ``timeframe`` (None: no cap). Every problem
    is reported at once in one :class:`ValidationFailed`, under the names in ``fields`` (the CLI
    passes ``("--start", "--end")``)."""
    start_field, end_field = fields
    problems = []
    parsed: dict[str, dt.datetime] = {}  # field → instant, for the fields that parsed and are sane
    for field, text in ((start_field, start_text), (end_field, end_text)):
        try:
            value = parse_instant(text, field)
        except ValidationFailed as exc:
            problems += exc.details or []
            continue
        if value < EPOCH:
            problems.append(field_problem(field, "must not be before 1970-01-01"))
            continue
        parsed[field] = value
    start, end = parsed.get(start_field), parsed.get(end_field)
    if end is not None and end > now:
        problems.append(field_problem(end_field, "is in the future"))
    if start is not None and end is not None:
        step = dt.timedelta(milliseconds=timeframe_ms(timeframe))
        if start >= end:
            problems.append(field_problem(start_field, f"must be before {end_field}"))
        elif max_candles is not None and (end - start) / step > max_candles:
            days = max_candles * step // dt.timedelta(days=1)
            problems.append(field_problem(end_field, f"the range may span at most {days} days for "
                                                     f"{timeframe} candles"))
    if problems:
        raise ValidationFailed("Invalid backtest range: " + "; ".join(f"{p['field']} {p['message']}"
                                                                       for p in problems) + ".", details=problems)
    # no problem means both fields parsed
    return Range(epoch_ms(parsed[start_field]), epoch_ms(parsed[end_field]))


def estimate_seconds(pages: int, engine_seconds: float, rate_limit_ms: float) -> float:
    """Seconds the work should take: each page at the exchange's pace plus latency, then the engine
    (``engine_seconds``: :func:`capandex.engine.cost.estimate`, nodes × candles)."""
    return pages * (rate_limit_ms / 1000.0 + jobs.ASSUMED_LATENCY_S) + engine_seconds


def submit(user_id: uuid.UUID, body: BacktestCreate, *, store: BlobStore | None = None,
           now: dt.datetime | None = None) -> Submission:
    """Validate and run (or start) a backtest; see :class:`Submission`.

    Raises:
        NotFound: not the user's flow. ValidationFailed: the flow or the dates (422).
        BadRequest: the exchange or symbol. In-request runs: the exchange's errors (RateLimited,
        UpstreamUnavailable, UpstreamError); the backtest row is then marked failed too.
    """
    from capandex.engine import compile_flow, cost
    from capandex.exchanges import get_client
    from capandex.exchanges.registry import resolve
    from capandex.flows.repository import get_flow
    from capandex.marketdata import CandleRange, get_store

    store = store or get_store()
    now = now or utcnow()
    span = validate_range(body, now)
    with transaction(user_id) as conn:
        flow = get_flow(conn, user_id=user_id, flow_id=body.flowId)
        resolve(body.exchange, conn)
    document = {"name": flow["name"], "nodes": flow["nodes"], "edges": flow["edges"], "settings": flow["settings"]}
    compiled = compile_flow(document)
    candle_range = CandleRange(body.exchange, body.symbol, body.timeframe, span.start_ms, span.end_ms, epoch_ms(now))
    work = cost.estimate(compiled, candle_range.slots)
    cost.check_budget(work)  # nodes × candles, before the exchange is asked anything
    client = get_client(body.exchange)
    plans = core.plan(candle_range, client, store)
    if not plans or not all(p.ready for p in plans):  # candles in the store (imported ones too) need no exchange
        client.market(body.symbol)
    seconds = estimate_seconds(sum(p.pages for p in plans), work.seconds, client.rate_limit_ms)
    settings = get_settings()
    in_request = seconds <= settings.backtest_sync_budget_s
    with transaction(user_id) as conn:
        _claim_slot(conn, user_id, now, in_request=in_request)
        row = repo.create(conn, user_id=user_id, flow_id=body.flowId, exchange=body.exchange, symbol=body.symbol,
                          timeframe=body.timeframe, start_ms=span.start_ms, end_ms=span.end_ms,
                          deadline_s=IN_REQUEST_DEADLINE_S if in_request else settings.backtest_deadline_s)
    backtest_id = row["id"]
    try:  # from here on the row exists: whatever fails must leave it failed, not running
        # the flow as run, for the background tasks and for the report (GET …/report) either way
        jobs.snapshot(store, user_id, backtest_id, document)
        if in_request:
            candles = core.load_candles(candle_range, plans, store, client)
            result = jobs.record_result(backtest_id, user_id, core.run(compiled, candles), store)
            return Submission(backtest_id, completed=True, body=result)
        start_async(backtest_id, user_id)
    except Exception as exc:
        jobs.fail_job(backtest_id, user_id, jobs.reason_of(exc))
        raise
    return Submission(backtest_id, completed=False,
                      body={"backtestId": backtest_id, "status": repo.RUNNING, "progress": 0})


def _claim_slot(conn: Connection, user_id: uuid.UUID, now: dt.datetime, *, in_request: bool) -> None:
    """:class:`RateLimited` (429, ``Retry-After``) when the user already has as many backtests
    running where this one would run (in the request, or in the background) as a user may. Counted
    under the user's lock in the transaction that adds the row, so concurrent submissions cannot
    both pass."""
    lock_owner(conn, backtests, user_id)
    background, requests = repo.running(conn, user_id=user_id, now=now, longer_than_s=IN_REQUEST_DEADLINE_S)
    if in_request and requests >= MAX_IN_REQUEST_PER_USER:
        raise RateLimited(f"You have {requests} backtests running; at most {MAX_IN_REQUEST_PER_USER} may run at once. "
                          "Wait for one to finish.", retry_after=REQUEST_BUSY_RETRY_AFTER_S)
    if not in_request and background >= MAX_RUNNING_PER_USER:
        raise RateLimited(f"You have {background} backtests running in the background; at most "
                          f"{MAX_RUNNING_PER_USER} may run at once. Wait for one to finish "
                          "(GET /api/engine/backtest/{backtestId}) or use a shorter range, which runs in the request.",
                          retry_after=BUSY_RETRY_AFTER_S)


def get(conn: Connection, user_id: uuid.UUID, backtest_id: str, *, store: BlobStore | None = None) -> dict[str, Any]:
    """A backtest as the API shows it (see :class:`~capandex.backtests.models.BacktestPublic`)."""
    row = _current(conn, user_id, backtest_id)
    out: dict[str, Any] = {"backtestId": row.id, "status": row.status, "progress": round(row.progress, 1)}
    if row.status == repo.FAILED:
        out["error"] = row.error
    if row.status == repo.COMPLETED and row.result_key:
        from capandex.marketdata import get_store

        data = (store or get_store()).get(row.result_key)
        if data is None:
            out["metrics"] = row.metrics
        else:
            out.update(json.loads(data))
    return out


def _current(conn: Connection, user_id: uuid.UUID, backtest_id: str) -> Any:
    """The user's backtest row, ``failed`` once its run has outlived its deadline (a run that died
    with its Lambda or process is never left ``running``)."""
    row = repo.get(conn, user_id=user_id, backtest_id=backtest_id)
    if repo.is_stale(row, get_settings().backtest_deadline_s):
        reason = "The backtest did not finish in time (its run was cut short); start it again."
        repo.fail(conn, user_id=user_id, backtest_id=backtest_id, reason=reason)
        row = repo.get(conn, user_id=user_id, backtest_id=backtest_id)
    return row


def trades(conn: Connection, user_id: uuid.UUID, backtest_id: str, offset: int, limit: int, *,
           store: BlobStore | None = None) -> dict[str, Any]:
    """A page of a completed backtest's closed trades, in order, from all of them (its result lists
    the first :data:`~capandex.engine.LISTED_TRADES`): one range read of the stored records, so a
    page costs the same at the start of a year of 1m trades as at its end.

    Raises:
        NotFound: not the user's backtest, or its files are gone. Conflict: it has not completed.
    """
    import numpy as np  # not at the API's cold start

    from capandex.engine.result import TRADE_RECORD, TradeTable
    from capandex.marketdata import get_store

    row = _current(conn, user_id, backtest_id)
    if row.status != repo.COMPLETED:
        raise Conflict(f"The backtest is {row.status}; its trades are listed once it has completed.")
    store = store or get_store()
    total, size = int(row.metrics["totalTrades"]), TRADE_RECORD.itemsize
    stop = min(total, offset + limit)
    data = store.get_range(core.beside(row.result_key, core.TRADES_FILE), offset * size, max(offset, stop) * size)
    if data is None:  # stored before the records were: its result.json lists the trades it has
        listed = json.loads(store.get(row.result_key) or b"null")
        if listed is None:
            raise NotFound("The backtest's result is no longer stored; run it again.")
        if stop > len(listed["trades"]):
            raise Conflict(f"This backtest was stored with its first {len(listed['trades']):,} trades only; "
                           "run it again to list all of them.")
        return {"trades": listed["trades"][offset:stop], "total": total, "offset": offset}
    return {"trades": TradeTable.from_records(np.frombuffer(data, TRADE_RECORD)).to_dicts(), "total": total,
            "offset": offset}


# -- background runs ------------------------------------------------------------------------------
_pool: FairPool | None = None
_futures: dict[str, Future[None]] = {}
_lock = threading.Lock()


def start_async(backtest_id: str, user_id: uuid.UUID) -> None:
    """Run the backtest past the request: a Step Functions execution when a state machine is
    configured (AWS), else the in-process pool (``CAPANDEX_BACKTEST_WORKERS`` threads serving
    users in turn: :class:`~capandex.backtests.fairpool.FairPool`)."""
    global _pool
    settings = get_settings()
    if settings.backtest_state_machine_arn:
        start_execution(settings.backtest_state_machine_arn, backtest_id, user_id)
        return
    with _lock:
        if _pool is None:
            _pool = FairPool(settings.backtest_workers)
        _futures[backtest_id] = _pool.submit(user_id, lambda: jobs.run_local(backtest_id, user_id))


def start_execution(state_machine_arn: str, backtest_id: str, user_id: uuid.UUID, client: Any = None) -> str:
    """Start the state machine for a backtest (execution name = backtest id: a retry cannot start
    it twice). Returns the execution ARN."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or boto3.client("stepfunctions")
    try:
        response = client.start_execution(stateMachineArn=state_machine_arn, name=backtest_id,
                                          input=json.dumps({"backtestId": backtest_id, "userId": str(user_id)}))
    except (BotoCoreError, ClientError) as exc:  # throttled, unreachable, or misconfigured: logged here
        logger.exception("could not start the backtest state machine for %s", backtest_id)
        raise UpstreamUnavailable("The backtest could not be started; try again shortly.") from exc
    return response["executionArn"]


def wait_local(backtest_id: str, timeout_s: float | None = None) -> None:
    """Block until an in-process background backtest has finished (tests, the CLI)."""
    with _lock:
        future = _futures.get(backtest_id)
    if future is not None:
        future.result(timeout=timeout_s)
