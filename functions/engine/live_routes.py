"""Live and paper executions (``/api/engine/start|stop|status``) and webhook triggers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from capandex.api.deps import CurrentUser, Db, SettingsDep, get_confirmed_user
from capandex.api.openapi import errors
from capandex.auth import AuthenticatedUser
from capandex.live import executions
from capandex.live.models import (
    ExecutionStatus,
    ParityReport,
    Started,
    StartRequest,
    StopRequest,
    WebhookCall,
    WebhookFired,
)

router = APIRouter(tags=["engine"])


def listed_market(user: CurrentUser, body: StartRequest) -> tuple[str, str]:
    """The flow's (exchange, symbol), checked against the exchange's listing. A dependency, declared
    before ``Db`` in :func:`start`: FastAPI resolves dependencies in parameter order, so the
    exchange is asked before the request's transaction opens."""
    return executions.check_market(user_id=user.id, flow_id=body.flowId, replay_from=body.replayFrom)


def confirmed_if_live(user: CurrentUser, body: StartRequest, settings: SettingsDep) -> AuthenticatedUser:
    """A live start moves money: Supabase Auth confirms the session first (a paper start does not)."""
    return get_confirmed_user(user, settings) if body.mode == "live" else user


@router.post("/api/engine/start", response_model=Started, responses=errors(404, 409))
def start(*, user: Annotated[AuthenticatedUser, Depends(confirmed_if_live)], body: StartRequest,
          market: Annotated[tuple[str, str], Depends(listed_market)], db: Db) -> dict:
    """Run the flow on paper or live (one execution per flow). The exchange is asked whether it
    lists the flow's symbol first (503 when it cannot be reached). Paper with ``replayFrom`` replays
    the past from that instant, advanced only by ``capandex tick --at``; live needs a validated
    ``exchangeKeyId`` of the flow's exchange."""
    return executions.start_execution(db, user_id=user.id, flow_id=body.flowId, mode=body.mode,
                                      exchange_key_id=body.exchangeKeyId, checked_market=market,
                                      replay_from=body.replayFrom)


def close_if_asked(user: CurrentUser, body: StopRequest) -> None:
    """``closePosition``: sell the paper position first, in the server's own transaction (declared
    before ``Db`` in :func:`stop`, so it runs before the stop's transaction opens)."""
    if body.closePosition:
        executions.close_position(user_id=user.id, execution_id=body.executionId)


@router.post("/api/engine/stop", response_model=ExecutionStatus, responses=errors(404))
def stop(*, user: CurrentUser, body: StopRequest, _closed: Annotated[None, Depends(close_if_asked)],
         db: Db) -> dict:
    """Stop an execution. Its open position stays open (a live one in your exchange account, a paper
    one marked at its last close) unless ``closePosition: true`` sells a paper position first."""
    return executions.stop_execution(db, user_id=user.id, execution_id=body.executionId)


@router.get("/api/engine/status", response_model=ExecutionStatus, responses=errors(404))
def status(*, user: CurrentUser, db: Db,
           executionId: Annotated[str, Query(min_length=1, max_length=64)]) -> dict:
    """Where an execution stands: candles processed (``currentTick``), pnl with the open position
    marked at the last close, positions, errors, candles not processed yet (``lagCandles``) and the
    latest parity summary."""
    return executions.execution_status(db, user_id=user.id, execution_id=executionId)


@router.get("/api/engine/parity", response_model=ParityReport, responses=errors(404, 422, 503))
def parity(*, user: CurrentUser, executionId: Annotated[str, Query(min_length=1, max_length=64)],
           limit: Annotated[int, Query(ge=1, le=5000, description="most recent trades listed")] = 500) -> dict:
    """The backtest of the execution's flow over the candles it saw, beside its real fills: per trade
    the signal candle, both fills (realised slippage), fees, missing or extra trades; the tracking
    error of pnl. No transaction is held while the candles load."""
    from capandex.live.parity import report

    return report(user_id=user.id, execution_id=executionId, limit=limit)


#: the webhook's body as it is read (raw, bounded, so a TradingView alert's plain text is accepted too)
WEBHOOK_BODY = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": WebhookCall.model_json_schema()},
    "text/plain": {"schema": {"type": "string", "enum": ["buy", "sell"]}}}}}


@router.post("/api/webhooks/{flowId}/{token}", response_model=WebhookFired, openapi_extra=WEBHOOK_BODY,
             responses=errors(404, 409, 413, 429, 503))
async def webhook(flowId: str, token: str, request: Request,
                  x_webhook_id: Annotated[str | None, Header(
                      alias="X-Webhook-Id", description="the caller's call id: the same id fires once")] = None,
                  ) -> dict:
    """Fire the flow's running execution (a TradingView alert, a script). No cookie: the secret
    token in the path (shown once by ``POST /api/flows/{flowId}/webhook``) is the credential.

    The body is read here (bounded) so the size limit applies before any work; the rest is sync.
    """
    from starlette.concurrency import run_in_threadpool

    from capandex.live import webhooks

    body = await webhooks.read_body(request)
    return await run_in_threadpool(webhooks.fire, flow_id=flowId, token=token, body=body, call_id=x_webhook_id)
