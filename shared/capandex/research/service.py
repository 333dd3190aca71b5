"""``/api/engine/optimize…``: submit, read, cancel an optimisation, page its trials, apply a winner.

:func:`submit` validates everything at once (the dates, the request against the flow, walk-forward
against the range, the cost), then starts the optimisation in the background: the Step Functions
state machine ``statemachines/optimize.asl.json`` in AWS, a thread under ``capandex serve`` that
runs the same steps with a process pool (:mod:`capandex.research.jobs`). Bounded cost per request:

* the space holds at most 100,000 combinations (:data:`~capandex.research.space.MAX_COMBINATIONS`);
* every scope together evaluates at most ``optimize_max_trials`` trials;
* the cost model — trials × candles × the flow's engine time per candle
  (:func:`capandex.engine.cost.estimate`, an upper bound: the batch engine shares indicators),
  plus the search's own work (TPE's sampling grows with the square of its trials:
  :func:`~capandex.research.search.sampler_seconds`) — stays under ``optimize_max_cpu_seconds``,
  and one run of the flow over the range fits the engine's memory budget;
* one running optimisation per user: another submission is a 429 with ``Retry-After`` (a partial
  unique index makes that hold across concurrent requests, not just a check before an insert).

Another user's optimisation is indistinguishable from a missing one (404). A ``running`` row past
its deadline is reported failed, so nothing stays running if its workers died.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection

from capandex.backtests.service import check_range
from capandex.config import get_settings
from capandex.db.session import transaction
from capandex.errors import Conflict, NotFound, RateLimited, UpstreamUnavailable, ValidationFailed, field_problem
from capandex.marketdata.chunks import timeframe_ms
from capandex.research import repository as repo
from capandex.research.models import OptimizeCreate
from capandex.timeutil import epoch_ms, utcnow

logger = logging.getLogger("capandex.research")

#: rows of ``GET …/trials`` per page at most
MAX_PAGE = 1000


def submit(user_id: uuid.UUID, body: OptimizeCreate, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Validate and start an optimisation; returns its running status (the route answers 202).

    Raises:
        ValidationFailed: every problem of the dates, request, walk-forward and cost at once (422).
        NotFound: not the user's flow. BadRequest: the exchange or symbol. RateLimited: the user
        already has a running optimisation (429 with Retry-After).
    """
    from capandex.engine import compile_flow
    from capandex.exchanges import get_client
    from capandex.exchanges.registry import resolve
    from capandex.flows.repository import get_flow
    from capandex.marketdata import CandleRange, get_store
    from capandex.research import jobs  # numpy and the engine: not at the API's cold start
    from capandex.research.request import parse_request
    from capandex.research.space import raise_problems

    now = now or utcnow()
    problems: list[dict[str, Any]] = []
    span = _collect(problems, lambda: check_range(body.startDate, body.endDate, body.timeframe, now))
    with transaction(user_id) as conn:
        flow = get_flow(conn, user_id=user_id, flow_id=body.flowId)
        resolve(body.exchange, conn)
    document = {"name": flow["name"], "nodes": flow["nodes"], "edges": flow["edges"], "settings": flow["settings"]}
    compiled = compile_flow(document)
    spec = _collect(problems, lambda: parse_request(body.research_request(), compiled.flow))
    total = 0
    if span is not None and spec is not None:
        total = _collect(problems, lambda: _check_cost(spec, compiled, span.start_ms, span.end_ms, body.timeframe)) or 0
    raise_problems("optimisation request", problems)
    assert span is not None and spec is not None  # a problem was raised otherwise
    store = get_store()
    candle_range = CandleRange(body.exchange, body.symbol, body.timeframe, span.start_ms, span.end_ms, epoch_ms(now))
    client = get_client(body.exchange)
    from capandex.backtests import core

    if not all(plan.ready for plan in core.plan(candle_range, client, store)):
        client.market(body.symbol)  # an unknown symbol is a 400 before anything starts
    settings = get_settings()
    with transaction() as conn:  # the server's role: only the server writes optimisations (schema.py)
        _fail_stale(conn, user_id)
        try:
            row = repo.create(conn, user_id=user_id, flow_id=body.flowId, exchange=body.exchange, symbol=body.symbol,
                              timeframe=body.timeframe, start_ms=span.start_ms, end_ms=span.end_ms,
                              method=spec.method, trials_total=total, deadline_s=settings.optimize_deadline_s)
        except repo.AlreadyRunning:
            running = repo.running(conn, user_id=user_id)
            raise RateLimited("You already have an optimisation running; wait for it to finish or cancel it "
                              f"(DELETE /api/engine/optimize/{running.id if running else '…'}).",
                              retry_after=_retry_after(conn, user_id, running)) from None
    optimization_id = row["id"]
    try:  # the row exists: whatever fails now must leave it failed, not running
        jobs.snapshot(store, user_id, optimization_id, document, spec)
        start(optimization_id, user_id)
    except Exception as exc:
        jobs.fail_job(optimization_id, user_id, jobs.reason_of(exc))
        raise
    return {"optimizationId": optimization_id, "status": repo.RUNNING, "progress": 0.0, "trialsDone": 0,
            "trialsTotal": total}


def _collect(problems: list[dict[str, Any]], check: Any) -> Any:
    """``check()``'s value, or None with its :class:`ValidationFailed` details added to ``problems``."""
    try:
        return check()
    except ValidationFailed as exc:
        problems.extend(exc.details or [field_problem("body", exc.message)])
        return None


def _check_cost(spec: Any, compiled: Any, start_ms: int, end_ms: int, timeframe: str) -> int:
    """The trials the request will evaluate in all; :class:`ValidationFailed` naming what to cut
    when they, the cost model or one run's memory exceed the limits (see the module docstring)."""
    from capandex.engine import cost
    from capandex.research.optimizer import scopes_for
    from capandex.research.search import sampler_seconds
    from capandex.research.study import Study
    from capandex.research.walkforward import windows_between

    settings = get_settings()
    windows = [] if spec.walk_forward is None else windows_between(start_ms, end_ms, spec.walk_forward)
    study = Study(spec, scopes_for(windows))
    step = timeframe_ms(timeframe)
    candles = [(end_ms - start_ms) // step] + [(w.train_end - w.train_start) // step for w in windows]
    per_scope = [search.total for search in study.searches]
    seconds = sum(trials * cost.estimate(compiled, count).seconds for trials, count in zip(per_scope, candles,
                                                                                          strict=True))
    seconds += sum(sampler_seconds(search) for search in study.searches)
    problems = []
    cut = "space" if spec.method == "grid" else "trials"
    if study.total > settings.optimize_max_trials:
        problems.append(field_problem(cut, f"{study.total:,} trials in all (walk-forward windows included); at most "
                                           f"{settings.optimize_max_trials:,}"))
    if seconds > settings.optimize_max_cpu_seconds:
        problems.append(field_problem(cut, f"would cost about {seconds / 60:,.0f} CPU-minutes by the cost model "
                                           "(trials × candles × the flow's time per candle, plus TPE's sampling); "
                                           f"at most {settings.optimize_max_cpu_seconds / 60:,.0f}: fewer combinations "
                                           "or trials, a shorter range, or fewer walk-forward windows"))
    try:
        cost.check_budget(cost.estimate(compiled, candles[0]))
    except ValidationFailed as exc:
        problems += exc.details or []
    if problems:
        raise ValidationFailed("The optimisation is too large.", details=problems)
    return study.total


def _fail_stale(conn: Connection, user_id: uuid.UUID) -> None:
    """A running optimisation past its deadline no longer blocks a new one: it is failed."""
    row = repo.running(conn, user_id=user_id)
    if row is not None and repo.is_stale(row):
        repo.fail(conn, user_id=user_id, optimization_id=row.id, reason=_STALE)


_STALE = "The optimisation did not finish in time (its run was cut short); start it again."


def _retry_after(conn: Connection, user_id: uuid.UUID, row: Any) -> float:
    """Seconds until the running optimisation should end, from its pace so far (30 s to 1 h)."""
    if row is None:
        return 30.0
    done = repo.trials_done(conn, user_id=user_id, optimization_id=row.id)
    elapsed = (utcnow() - row.created_at).total_seconds()
    if not done or not row.trials_total:
        return 30.0
    return float(max(30.0, min(3600.0, elapsed * (row.trials_total - done) / done)))


def get(conn: Connection, user_id: uuid.UUID, optimization_id: str) -> dict[str, Any]:
    """An optimisation as the API shows it (see :class:`~capandex.research.models.OptimizationPublic`)."""
    row = repo.get(conn, user_id=user_id, optimization_id=optimization_id)
    # a stale row is shown failed without writing (a read; users cannot write optimisations): the
    # next submission records the failure (_fail_stale)
    status, error = (repo.FAILED, _STALE) if repo.is_stale(row) else (row.status, row.error)
    done = repo.trials_done(conn, user_id=user_id, optimization_id=optimization_id)
    total = max(row.trials_total, done)
    progress = 100.0 if status == repo.COMPLETED else (round(100.0 * done / total, 1) if total else 0.0)
    out: dict[str, Any] = {"optimizationId": row.id, "status": status, "progress": progress, "trialsDone": done,
                           "trialsTotal": total}
    if status == repo.FAILED:
        out["error"] = error
    if row.status == repo.COMPLETED and row.result_key:
        from capandex.marketdata import get_store

        data = get_store().get(row.result_key)
        out.update(json.loads(data) if data is not None else {"best": row.best})
    return out


def cancel(user_id: uuid.UUID, optimization_id: str) -> dict[str, Any]:
    """Stop a running optimisation: no new batch starts, the execution is stopped (AWS).

    Raises:
        NotFound: not the user's. Conflict: it has already ended.
    """
    with transaction() as conn:  # the server's role: only the server writes optimisations
        row = repo.get(conn, user_id=user_id, optimization_id=optimization_id)
        if not repo.cancel(conn, user_id=user_id, optimization_id=optimization_id):
            raise Conflict(f"The optimisation has already ended ({row.status}).")
    if row.execution_arn:
        _stop_execution(row.execution_arn)
    with transaction(user_id) as conn:
        return get(conn, user_id, optimization_id)


def trials(conn: Connection, user_id: uuid.UUID, optimization_id: str, offset: int, limit: int) -> dict[str, Any]:
    """A page of the whole-range trial table (trial order) of a completed optimisation."""
    table, whole = _table(conn, user_id, optimization_id)
    order = table.numbers.argsort(kind="stable")[offset:offset + min(limit, MAX_PAGE)]
    return {"trials": [table.trial(int(row), whole) for row in order], "total": len(table), "offset": offset}


def _table(conn: Connection, user_id: uuid.UUID, optimization_id: str) -> tuple[Any, tuple[bool, ...]]:
    """The completed optimisation's whole-range trial table and which parameters are whole numbers."""
    from capandex.marketdata import get_store
    from capandex.research import jobs  # numpy and the engine: not at the API's cold start
    from capandex.research.study import TrialTable

    row = repo.get(conn, user_id=user_id, optimization_id=optimization_id)
    if row.status != repo.COMPLETED:
        raise Conflict(f"The optimisation is {row.status}; its trials are available once it has completed.")
    store = get_store()
    data = store.get(jobs.key(user_id, optimization_id, "trials.npz"))
    if data is None:
        raise NotFound("The optimisation's trials are no longer stored.")
    _, spec = jobs.read_request(store, user_id, optimization_id)
    return TrialTable.from_bytes(data), spec.space.whole


def apply(user_id: uuid.UUID, optimization_id: str, trial: int | None) -> dict[str, Any]:
    """Make the winner's (or trial ``trial``'s) parameters the flow's current state, as a new
    version (the state before is saved first). The parameters are applied to the flow document
    the optimisation ran on.

    Raises:
        NotFound: not the user's, or no such trial. Conflict: not completed, no winner, or the
            trial was refused by the flow.
    """
    from capandex.engine import validate_flow
    from capandex.flows.repository import apply_document
    from capandex.marketdata import get_store
    from capandex.research import jobs  # numpy and the engine: not at the API's cold start
    from capandex.research.space import apply_params

    with transaction(user_id) as conn:
        table, whole = _table(conn, user_id, optimization_id)
        row = repo.get(conn, user_id=user_id, optimization_id=optimization_id)
    if trial is None:
        params = (row.best or {}).get("params")
        if params is None:
            raise Conflict("No trial satisfied the constraints: there is no winner to apply (name a trial).")
    else:
        found = [r for r in range(len(table)) if int(table.numbers[r]) == trial]
        if not found:
            raise NotFound(f"No trial {trial} in this optimisation.")
        record = table.trial(found[0], whole)
        if "error" in record:
            raise Conflict(f"Trial {trial} was refused by the flow: {record['error']}")
        params = record["params"]
    flow, _ = jobs.read_request(get_store(), user_id, optimization_id)
    document = apply_params(flow, params)
    validate_flow(document)
    shown = ", ".join(f"{name}={value}" for name, value in params.items())
    with transaction(user_id) as conn:
        version = apply_document(conn, user_id=user_id, flow_id=row.flow_id, document=document,
                                 description=f"Applied optimisation {optimization_id}: {shown}"[:500])
    return {"flowId": row.flow_id, "versionId": version["id"], "version": version["version"], "params": params}


# -- background runs ------------------------------------------------------------------------------
_executor: ThreadPoolExecutor | None = None
_futures: dict[str, Future[None]] = {}
_lock = threading.Lock()


def start(optimization_id: str, user_id: uuid.UUID) -> None:
    """Run past the request: the state machine when configured (AWS), else a thread of this process
    (``capandex serve``) that runs the steps with ``CAPANDEX_OPTIMIZE_WORKERS`` processes."""
    from capandex.research import jobs  # numpy and the engine: not at the API's cold start

    global _executor
    settings = get_settings()
    if settings.optimize_state_machine_arn:
        arn = start_execution(settings.optimize_state_machine_arn, optimization_id, user_id)
        with transaction() as conn:  # the server's role: only the server writes optimisations
            repo.set_plan(conn, user_id=user_id, optimization_id=optimization_id, execution_arn=arn)
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="optimize")
        _futures[optimization_id] = _executor.submit(jobs.run_local, optimization_id, user_id,
                                                     settings.optimize_workers)


def start_execution(state_machine_arn: str, optimization_id: str, user_id: uuid.UUID, client: Any = None) -> str:
    """Start the state machine (execution name = the optimisation id: a retry cannot start it twice)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or boto3.client("stepfunctions")
    try:
        response = client.start_execution(stateMachineArn=state_machine_arn, name=optimization_id,
                                          input=json.dumps({"optimizationId": optimization_id,
                                                            "userId": str(user_id)}))
    except (BotoCoreError, ClientError) as exc:
        logger.exception("could not start the optimisation state machine for %s", optimization_id)
        raise UpstreamUnavailable("The optimisation could not be started; try again shortly.") from exc
    return str(response["executionArn"])


def _stop_execution(execution_arn: str) -> None:
    """Stop the execution (its batches already see the cancelled row and spend nothing)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        boto3.client("stepfunctions").stop_execution(executionArn=execution_arn, cause="cancelled by the user")
    except (BotoCoreError, ClientError):
        logger.warning("could not stop %s; its tasks stop on their own", execution_arn, exc_info=True)


def wait_local(optimization_id: str, timeout_s: float | None = None) -> None:
    """Block until an in-process optimisation has finished (tests)."""
    with _lock:
        future = _futures.get(optimization_id)
    if future is not None:
        future.result(timeout=timeout_s)
