"""A flow's live/paper performance and its webhook secret (``/api/flows/{flowId}/…``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from capandex.api.deps import ConfirmedUser, CurrentUser, Db
from capandex.api.openapi import errors
from capandex.live.models import Performance, WebhookUrl
from capandex.live.performance import flow_performance, parse_bound

router = APIRouter(tags=["flows"])


@router.get("/api/flows/{flowId}/performance", response_model=Performance, responses=errors(404))
def performance(*, user: CurrentUser, db: Db, flowId: str,
                from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
                to: Annotated[str | None, Query(max_length=40)] = None) -> dict:
    """The metrics of the flow's closed positions (paper and live executions), optionally those
    closed between ``from`` and ``to`` (ISO 8601); the equity curve's timestamps are epoch ms."""
    return flow_performance(db, user_id=user.id, flow_id=flowId, start=parse_bound(from_, "from"),
                            end=parse_bound(to, "to"))


@router.post("/api/flows/{flowId}/webhook", response_model=WebhookUrl, responses=errors(404))
def rotate_webhook(*, user: ConfirmedUser, db: Db, flowId: str) -> dict:
    """Create or replace the flow's webhook token; the URL is shown this once (only a hash is kept)."""
    from capandex.live.webhooks import rotate_token

    return rotate_token(db, user_id=user.id, flow_id=flowId)
