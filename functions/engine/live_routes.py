"""Live and paper executions (``/api/engine/start|stop|status``) and webhook triggers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from capandex.api.deps import CurrentUser, Db
from capandex.live import executions
from capandex.live.models import ExecutionStatus, Started, StartRequest, StopRequest, WebhookFired

router = APIRouter(tags=["engine"])


def listed_market(user: CurrentUser, body: StartRequest) -> tuple[str, str]:
    """The flow's (exchange, symbol), checked against the exchange's listing. A dependency, declared
    before ``Db`` in :func:`start`: FastAPI resolves dependencies in parameter order, so the
    exchange is asked before the request's transaction opens."""
    return executions.check_market(user_id=user.id, flow_id=body.flowId)


@router.post("/api/engine/start", response_model=Started)
def start(*, user: CurrentUser, body: StartRequest, market: Annotated[tuple[str, str], Depends(listed_market)],
          db: Db) -> dict:
    return executions.start_execution(db, user_id=user.id, flow_id=body.flowId, mode=body.mode,
                                      exchange_key_id=body.exchangeKeyId, checked_market=market,
                                      replay_from=body.replayFrom)


@router.post("/api/engine/stop", response_model=ExecutionStatus)
def stop(*, user: CurrentUser, db: Db, body: StopRequest) -> dict:
    return executions.stop_execution(db, user_id=user.id, execution_id=body.executionId)


@router.get("/api/engine/status", response_model=ExecutionStatus)
def status(*, user: CurrentUser, db: Db,
           executionId: Annotated[str, Query(min_length=1, max_length=64)]) -> dict:
    return executions.execution_status(db, user_id=user.id, execution_id=executionId)


@router.post("/api/webhooks/{flowId}/{token}", response_model=WebhookFired)
async def webhook(flowId: str, token: str, request: Request) -> dict:
    """No cookie: the secret token in the path is the credential (compared in constant time).

    The body is read here (bounded) so the size limit applies before any work; the rest is sync.
    """
    from starlette.concurrency import run_in_threadpool

    from capandex.live import webhooks

    body = await webhooks.read_body(request)
    return await run_in_threadpool(webhooks.fire, flow_id=flowId, token=token, body=body,
                                   call_id=request.headers.get("x-webhook-id"))
