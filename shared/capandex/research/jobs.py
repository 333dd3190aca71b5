"""An optimisation's background steps, by optimisation id: the Step Functions tasks and ``capandex serve``.

``statemachines/optimize.asl.json`` runs them in AWS; :func:`run_local` runs the same functions in
the same order under ``capandex serve`` (batches in a process pool)::

    plan_job → fetch_chunk_job × missing chunks → prepare_job
      → [ batch_job × the round's batches (Distributed Map) → collect_job ] until done → reduce_job
    (any failure) → fail_job

Everything a step needs lives in the store under ``optimizations/<user>/<id>/``:

* ``request.json`` — the flow as submitted, the request and the costs (editing the flow while it
  runs changes nothing);
* ``rounds/<r>/batches.json`` — round r's batches, the Distributed Map's ItemReader list (each
  item carries its parameter sets, so a batch task reads nothing else but the candles);
* ``rounds/<r>/result-<i>.json`` — what batch i of round r evaluated. A batch task that is retried
  rewrites the same key, and :func:`collect_job` reads each batch of the round exactly once, so a
  result is never counted twice; its ``optimization_batches`` row (progress) is inserted once;
* ``study/<r>/state.json`` + ``table-<scope>.npz`` — the study before round r's results: a
  ``collect_job`` retried after a crash starts again from the same state;
* ``result.json`` and ``trials.npz`` — the summary and the whole-range trial table.

Batch workers read candles from the chunk store only (``fetch_chunk_job`` filled it), never from
the exchange. Every step first checks that the optimisation is still ``running``: after a cancel
(``DELETE``) batches return at once and ``collect_job`` ends the loop, so nothing more is spent.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from capandex.backtests import core
from capandex.backtests.jobs import in_background, max_concurrency
from capandex.config import get_settings
from capandex.db.session import transaction
from capandex.errors import CapandexError, Conflict, ValidationFailed
from capandex.research import repository as repo
from capandex.research.batch import Trial
from capandex.research.optimizer import plan_scopes
from capandex.research.request import OptimizeSpec, parse_request
from capandex.research.runner import POOL_CANDLE_TRIALS, Costs, Evaluator, batch_size
from capandex.research.study import Batch, Scope, Study, TrialTable
from capandex.research.summary import summarize
from capandex.research.walkforward import Window
from capandex.timeutil import epoch_ms

if TYPE_CHECKING:
    from capandex.engine import Candles
    from capandex.marketdata import BlobStore, CandleRange

logger = logging.getLogger("capandex.research")


def key(user_id: uuid.UUID, optimization_id: str, name: str) -> str:
    return f"optimizations/{user_id}/{optimization_id}/{name}"


def _store() -> BlobStore:
    from capandex.marketdata import get_store

    return get_store()


def _row(user_id: uuid.UUID, optimization_id: str) -> Any:
    with transaction(user_id) as conn:
        return repo.get(conn, user_id=user_id, optimization_id=optimization_id)


def span_of(row: Any) -> CandleRange:
    """The row's candle range, as of the submission (every step agrees on which candles are closed)."""
    from capandex.marketdata import CandleRange

    return CandleRange(row.exchange, row.symbol, row.timeframe, row.start_ms, row.end_ms, epoch_ms(row.created_at))


def snapshot(store: BlobStore, user_id: uuid.UUID, optimization_id: str, flow: dict[str, Any],
             spec: OptimizeSpec) -> None:
    """Keep what the background steps run: the flow as submitted and the validated request."""
    body = {"flow": flow, "request": spec.to_json()}
    store.put(key(user_id, optimization_id, "request.json"), json.dumps(body).encode(), "application/json")


def read_request(store: BlobStore, user_id: uuid.UUID, optimization_id: str) -> tuple[dict[str, Any], OptimizeSpec]:
    """The flow as submitted and its validated request (see :func:`snapshot`)."""
    from capandex.engine import validate_flow

    data = store.get(key(user_id, optimization_id, "request.json"))
    if data is None:
        raise ValidationFailed("The optimisation's request snapshot is missing; submit it again.")
    saved = json.loads(data)
    return saved["flow"], parse_request(saved["request"], validate_flow(saved["flow"]))


@dataclass(frozen=True)
class Context:
    """What every step of one optimisation rebuilds the same way: the flow, the request, the
    candles from the store, the scopes and windows, and an evaluator for its batches."""

    flow: dict[str, Any]
    spec: OptimizeSpec
    candles: Candles
    scopes: list[Scope]
    windows: list[Window]
    evaluator: Evaluator


_contexts: dict[str, Context] = {}  # per container (or pool worker): the last optimisation's candles


def context(store: BlobStore, user_id: uuid.UUID, optimization_id: str, row: Any) -> Context:
    """The optimisation's :class:`Context`, kept for the next batch of the same optimisation."""
    found = _contexts.get(optimization_id)
    if found is not None:
        return found
    from capandex.exchanges import get_client

    flow, spec = read_request(store, user_id, optimization_id)
    span = span_of(row)
    candles = core.load_candles(span, core.plan(span, get_client(row.exchange), store), store)  # no client: store only
    scopes, windows = plan_scopes(spec, candles.time)
    made = Context(flow, spec, candles, scopes, windows, Evaluator(flow, candles, scopes, Costs()))
    _contexts.clear()
    _contexts[optimization_id] = made
    return made


def _still_running(user_id: uuid.UUID, optimization_id: str) -> Any | None:
    """The row while it runs; None once cancelled. A failed row (a batch said why) raises, so the
    state machine ends failed too."""
    row = _row(user_id, optimization_id)
    if row.status == repo.FAILED:
        raise Conflict(row.error or "The optimisation failed.")  # its row already says why
    return row if row.status == repo.RUNNING else None


@in_background
def plan_job(optimization_id: str, user_id: uuid.UUID) -> dict[str, Any]:
    """Step 1: the candle chunks still missing from the store (the inline Map fetches them)."""
    from capandex.exchanges import get_client

    row = _row(user_id, optimization_id)
    client = get_client(row.exchange)
    missing = [p.start_ms for p in core.plan(span_of(row), client, _store()) if not p.ready]
    ids = {"optimizationId": optimization_id, "userId": str(user_id)}
    return {**ids, "chunks": [{**ids, "start": start} for start in missing],
            "maxConcurrency": max_concurrency(client.rate_limit_ms)}


@in_background
def fetch_chunk_job(optimization_id: str, user_id: uuid.UUID, start_ms: int) -> dict[str, Any]:
    """Step 2 (one inline Map item): one chunk from the exchange into the store."""
    from capandex.exchanges import get_client

    row = _row(user_id, optimization_id)
    return {"start": start_ms, "pages": core.fetch_chunk(span_of(row), start_ms, get_client(row.exchange), _store())}


def prepare_job(optimization_id: str, user_id: uuid.UUID) -> dict[str, Any]:
    """Step 3: the candles are in the store; build the study (a walk-forward too long for them is
    a 422 naming ``walkForward``) and write round 0's batches."""
    store = _store()
    row = _row(user_id, optimization_id)
    ctx = context(store, user_id, optimization_id, row)
    study = Study(ctx.spec, ctx.scopes)
    with transaction() as conn:  # the server's role: users cannot write optimisations
        repo.set_plan(conn, user_id=user_id, optimization_id=optimization_id, trials_total=study.total)
    return _next_round(store, user_id, optimization_id, study, 0, len(ctx.candles))


def _next_round(store: BlobStore, user_id: uuid.UUID, optimization_id: str, study: Study, round_number: int,
                candles: int) -> dict[str, Any]:
    """Write round ``round_number``'s batches and the study as it stands before their results."""
    items: list[dict[str, Any]] = []
    while (batch := study.ask(batch_size(candles))) is not None:
        items.append({"optimizationId": optimization_id, "userId": str(user_id), "round": round_number,
                      "batch": len(items), **batch.to_json()})
    batches_key = key(user_id, optimization_id, f"rounds/{round_number}/batches.json")
    store.put(batches_key, json.dumps(items, separators=(",", ":")).encode(), "application/json")
    for index, table in enumerate(study.tables):
        store.put(key(user_id, optimization_id, f"study/{round_number}/table-{index}.npz"), table.to_bytes())
    state = {"round": round_number, "batches": len(items), "finished": not items, "study": study.state()}
    store.put(key(user_id, optimization_id, "study/state.json"), json.dumps(state).encode(), "application/json")
    return _round_output(optimization_id, user_id, round_number, not items, store)


def _round_output(optimization_id: str, user_id: uuid.UUID, round_number: int, done: bool,
                  store: BlobStore) -> dict[str, Any]:
    return {"optimizationId": optimization_id, "userId": str(user_id), "round": round_number, "done": done,
            "bucket": getattr(store, "bucket", None),
            "batchesKey": key(user_id, optimization_id, f"rounds/{round_number}/batches.json"),
            "maxConcurrency": get_settings().optimize_max_concurrency}


def batch_job(item: dict[str, Any]) -> dict[str, Any]:
    """Step 4 (one Distributed Map item): evaluate one batch, write its result, count it once."""
    optimization_id, user_id = item["optimizationId"], uuid.UUID(item["userId"])
    round_number, index = int(item["round"]), int(item["batch"])
    row = _row(user_id, optimization_id)
    if row.status != repo.RUNNING:  # cancelled or failed: spend nothing
        return {"batch": index, "trials": 0, "skipped": True}
    store = _store()
    try:
        trials = context(store, user_id, optimization_id, row).evaluator(Batch.from_json(item))
    except CapandexError as exc:
        # a Distributed Map reports only that an item failed (States.ExceedToleratedFailureThreshold):
        # say why here, before the Map's catch-all does (a late failure never overwrites this)
        fail_job(optimization_id, user_id, exc.message)
        raise
    body = {"trials": [_trial_record(t) for t in trials]}
    store.put(key(user_id, optimization_id, f"rounds/{round_number}/result-{index}.json"),
              json.dumps(body, allow_nan=False, separators=(",", ":")).encode(), "application/json")
    with transaction() as conn:  # the server's role: users cannot write optimisations
        repo.record_batch(conn, user_id=user_id, optimization_id=optimization_id, round_number=round_number,
                          batch=index, trials=len(trials))
    return {"batch": index, "trials": len(trials)}


def collect_job(optimization_id: str, user_id: uuid.UUID, round_number: int) -> dict[str, Any]:
    """Step 5: tell the study round ``round_number``'s results and write the next round (or
    say it is done). Idempotent: run again after a crash, it starts from the same saved state."""
    store = _store()
    row = _still_running(user_id, optimization_id)
    if row is None:
        return {**_round_output(optimization_id, user_id, round_number, True, store), "cancelled": True}
    saved = _load_json(store, key(user_id, optimization_id, "study/state.json"))
    if saved["round"] != round_number:  # this round was collected already (a retried task)
        return _round_output(optimization_id, user_id, saved["round"], saved["finished"], store)
    ctx = context(store, user_id, optimization_id, row)
    study = _load_study(store, user_id, optimization_id, ctx, round_number, saved["study"])
    items = _load_json(store, key(user_id, optimization_id, f"rounds/{round_number}/batches.json"))
    for item in items:
        # a batch that failed for good left no result: the Map should have failed (AWS does; moto's
        # interpreter lets the run succeed), so this is the last line of defence
        result = _load_json(store, key(user_id, optimization_id, f"rounds/{round_number}/result-{item['batch']}.json"))
        study.tell(Batch.from_json(item), [_trial_from(record) for record in result["trials"]])
    return _next_round(store, user_id, optimization_id, study, round_number + 1, len(ctx.candles))


def reduce_job(optimization_id: str, user_id: uuid.UUID) -> dict[str, Any]:
    """Step 6: rank, walk forward, test robustness and overfitting; store; mark completed."""
    store = _store()
    row = _still_running(user_id, optimization_id)
    if row is None:
        return {"optimizationId": optimization_id, "status": "cancelled"}
    saved = _load_json(store, key(user_id, optimization_id, "study/state.json"))
    ctx = context(store, user_id, optimization_id, row)
    study = _load_study(store, user_id, optimization_id, ctx, saved["round"], saved["study"])
    result = summarize(study, ctx.flow, ctx.candles, Costs(), ctx.windows)
    result_key = key(user_id, optimization_id, "result.json")
    store.put(key(user_id, optimization_id, "trials.npz"), study.tables[0].to_bytes())
    store.put(result_key, json.dumps(result, allow_nan=False, separators=(",", ":")).encode(), "application/json")
    with transaction() as conn:  # the server's role: users cannot write optimisations
        repo.complete(conn, user_id=user_id, optimization_id=optimization_id, best=result["best"],
                      result_key=result_key)
    return {"optimizationId": optimization_id, "status": repo.COMPLETED}


def fail_job(optimization_id: str, user_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """The catch-all: mark the optimisation failed with ``reason`` (if it is still running)."""
    with transaction() as conn:  # the server's role: users cannot write optimisations
        repo.fail(conn, user_id=user_id, optimization_id=optimization_id, reason=reason)
    return {"optimizationId": optimization_id, "status": repo.FAILED, "error": reason}


def reason_of(exc: BaseException) -> str:
    """What a user is told: a Capandex error's message; a bug is logged and told generically."""
    if isinstance(exc, CapandexError):
        return exc.message
    return "The optimisation failed because of an internal error; it has been logged."


def run_local(optimization_id: str, user_id: uuid.UUID, workers: int) -> None:
    """The whole optimisation in this process, step by step as the state machine runs it; batches
    in a ``spawn`` process pool of ``workers`` — in this thread when 1, when the whole run is under
    :data:`~capandex.research.runner.POOL_CANDLE_TRIALS` of work, or while a round has a single
    batch: starting the pool's interpreters costs seconds, more than such work takes."""
    try:
        planned = plan_job(optimization_id, user_id)
        for chunk in planned["chunks"]:
            fetch_chunk_job(optimization_id, user_id, chunk["start"])
        out = prepare_job(optimization_id, user_id)
        store = _store()
        row = _row(user_id, optimization_id)
        if row.trials_total * span_of(row).slots < POOL_CANDLE_TRIALS:
            workers = 1
        pool: ProcessPoolExecutor | None = None
        try:
            while not out["done"]:
                items = _load_json(store, out["batchesKey"])
                if pool is None and workers > 1 and len(items) > 1:
                    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                for _ in (pool.map(batch_job, items) if pool else map(batch_job, items)):
                    pass
                out = collect_job(optimization_id, user_id, out["round"])
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        if not out.get("cancelled"):
            reduce_job(optimization_id, user_id)
    except Exception as exc:
        if not isinstance(exc, CapandexError):
            logger.exception("optimisation %s failed", optimization_id)
        fail_job(optimization_id, user_id, reason_of(exc))


def _load_json(store: BlobStore, name: str) -> Any:
    data = store.get(name)
    if data is None:
        raise RuntimeError(f"missing {name} in the store")
    return json.loads(data)


def _load_study(store: BlobStore, user_id: uuid.UUID, optimization_id: str, ctx: Context, round_number: int,
                state: dict[str, Any]) -> Study:
    tables = []
    for index in range(len(ctx.scopes)):
        data = store.get(key(user_id, optimization_id, f"study/{round_number}/table-{index}.npz"))
        if data is None:
            raise RuntimeError(f"study table {index} of round {round_number} is missing")
        tables.append(TrialTable.from_bytes(data))
    return Study(ctx.spec, ctx.scopes, tables, state)


def _trial_record(trial: Trial) -> dict[str, Any]:
    record = trial.to_json()
    if trial.blocks is not None:
        record["blocks"] = trial.blocks.tolist()
    return record


def _trial_from(record: dict[str, Any]) -> Trial:
    blocks = record.get("blocks")
    return Trial(int(record["number"]), record["params"], record.get("metrics"), record.get("error"),
                 None if blocks is None else np.asarray(blocks, dtype=np.float64))
