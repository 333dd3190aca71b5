"""``GET /api/dashboard/balance``: the USD value of the stablecoins on all of the user's exchange keys.

Each exchange is asked concurrently with its own time limit; one that fails is listed with an
``error`` and does not fail the answer (see :mod:`capandex.keys.balance`).
"""

from __future__ import annotations

from fastapi import APIRouter

from capandex.api.deps import CurrentUser
from capandex.keys.balance import dashboard_balance
from capandex.keys.models import DashboardBalance

router = APIRouter(tags=["account"])


@router.get("/api/dashboard/balance", response_model=DashboardBalance)
def get_balance(*, user: CurrentUser) -> dict:
    # No Db dependency: the service reads the keys in its own short transaction and calls the
    # exchanges after it has closed, so no pooled connection waits on an exchange.
    return dashboard_balance(user_id=user.id)
