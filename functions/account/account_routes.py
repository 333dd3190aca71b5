"""Notifications, notification preferences and the dashboard's multi-flow overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from capandex.api.deps import CurrentUser, Db
from capandex.api.openapi import errors
from capandex.live import dashboard
from capandex.live.models import MultiFlow
from capandex.models import Success
from capandex.notifications import (
    delete_notification,
    get_preferences,
    list_notifications,
    mark_all_read,
    mark_read,
    set_preferences,
)
from capandex.notifications.models import NotificationsPublic, PreferencesPublic, PreferencesUpdate
from capandex.notifications.repository import EVENT_TYPES, MAX_OFFSET, TYPES

#: what ``type`` may name: a notification type, or the event that made it
NOTIFICATION_TYPES = (*TYPES, *EVENT_TYPES)

router = APIRouter(tags=["account"])
#: ids are "notif_" + 32 hex; a longer one is refused (422) rather than echoed back in a 404
NotificationId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/api/notifications", response_model=NotificationsPublic)
def list_(*, user: CurrentUser, db: Db,
          type: Annotated[str | None, Query(max_length=32, json_schema_extra={"enum": list(NOTIFICATION_TYPES)},
                                            description="a type, or an event name")] = None,
          unreadOnly: bool = False,
          limit: Annotated[int, Query(ge=1, le=200)] = 50,
          offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> dict:
    items, total = list_notifications(db, user_id=user.id, type=type, unread_only=unreadOnly,
                                      limit=limit, offset=offset)
    return {"notifications": items, "total": total}


@router.post("/api/notifications", response_model=Success)
def read_all(*, user: CurrentUser, db: Db) -> dict:
    mark_all_read(db, user_id=user.id)
    return {"success": True}


@router.patch("/api/notifications/{notificationId}", response_model=Success, responses=errors(404))
@router.post("/api/notifications/{notificationId}", response_model=Success, include_in_schema=False)
def read_one(*, user: CurrentUser, db: Db, notificationId: NotificationId) -> dict:
    mark_read(db, user_id=user.id, notification_id=notificationId)
    return {"success": True}


@router.delete("/api/notifications/{notificationId}", response_model=Success, responses=errors(404))
def delete_one(*, user: CurrentUser, db: Db, notificationId: NotificationId) -> dict:
    delete_notification(db, user_id=user.id, notification_id=notificationId)
    return {"success": True}


@router.get("/api/profile/preferences", response_model=PreferencesPublic)
def preferences(*, user: CurrentUser, db: Db) -> dict:
    return {"notification_preferences": get_preferences(db, user_id=user.id)}


@router.put("/api/profile/preferences", response_model=Success)
def update_preferences(*, user: CurrentUser, db: Db, body: PreferencesUpdate) -> dict:
    set_preferences(db, user_id=user.id, changes=body.notification_preferences)
    return {"success": True}


@router.get("/api/dashboard/multi-flow", response_model=MultiFlow)
def multi_flow(*, user: CurrentUser, db: Db) -> dict:
    return dashboard.multi_flow(db, user_id=user.id)
