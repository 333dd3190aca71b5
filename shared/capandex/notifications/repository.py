"""Notification rows: write (gated by preferences), list, mark read, delete.

Functions take the caller's ``Connection`` (one transaction), filter on ``user_id`` and never
commit. Another user's notification is not found (404), never forbidden.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from capandex.db.quota import keep_newest
from capandex.db.schema import new_id, notifications, utcnow
from capandex.errors import NotFound, ValidationFailed, field_problem
from capandex.notifications.preferences import PREFERENCE_KEYS, get_preferences
from capandex.timeutil import iso_utc

#: event (preference key) → the dashboard's notification type
EVENT_TYPES: dict[str, str] = {"engine_start": "engine", "engine_stop": "engine",
                               "engine_error": "engine", "trade_executed": "trade"}
#: every ``type`` a notification can have
TYPES = ("trade", "engine", "system")
MAX_LIMIT = 200
#: the deepest page (SQLite's OFFSET is a signed 64-bit integer: 10**30 overflowed into a 500)
MAX_OFFSET = 1_000_000
#: notifications kept per user: a new one drops the oldest beyond it (a paper start and stop write
#: two, and a user can start and stop ~30 times a second: unbounded, the table only grew)
MAX_KEPT = 1000


def notify(conn: Connection, *, user_id: uuid.UUID, event: str, title: str, message: str,
           action_url: str | None = None) -> str | None:
    """Write a notification for ``event`` unless the user turned that event off.

    Returns the new id, or None when the preferences suppressed it.
    """
    if event not in PREFERENCE_KEYS:
        raise ValueError(f"unknown notification event {event!r}")
    if not get_preferences(conn, user_id=user_id)[event]:
        return None
    notification_id = new_id("notif")
    conn.execute(insert(notifications).values(
        id=notification_id, user_id=user_id, type=EVENT_TYPES[event], event=event,
        title=title[:200], message=message, action_url=action_url, created_at=utcnow()))
    keep_newest(conn, notifications, user_id=user_id, keep=MAX_KEPT, newest=notifications.c.created_at)
    return notification_id


def _public(row: Any) -> dict[str, Any]:
    return {"id": row.id, "type": row.type, "event": row.event, "title": row.title,
            "message": row.message, "read_at": iso_utc(row.read_at), "action_url": row.action_url,
            "created_at": iso_utc(row.created_at)}


def list_notifications(conn: Connection, *, user_id: uuid.UUID, type: str | None = None,
                       unread_only: bool = False, limit: int = 50, offset: int = 0,
                       ) -> tuple[list[dict[str, Any]], int]:
    """One page of the user's notifications, newest first, and the total matching the filters.

    ``type`` is a type (``trade``, ``engine``, ``system``) or an event name (``engine_error``).
    """
    if limit < 1 or limit > MAX_LIMIT:
        raise ValidationFailed("Invalid input: limit.", details=[field_problem("limit", f"must be 1..{MAX_LIMIT}")])
    if offset < 0 or offset > MAX_OFFSET:
        raise ValidationFailed("Invalid input: offset.",
                               details=[field_problem("offset", f"must be 0..{MAX_OFFSET}")])
    where = [notifications.c.user_id == user_id]
    if type is not None:
        if type in TYPES:
            where.append(notifications.c.type == type)
        elif type in EVENT_TYPES:
            where.append(notifications.c.event == type)
        else:
            raise ValidationFailed("Invalid input: type.", details=[field_problem(
                "type", f"must be one of {', '.join(TYPES + tuple(EVENT_TYPES))}")])
    if unread_only:
        where.append(notifications.c.read_at.is_(None))
    total = conn.execute(select(func.count()).select_from(notifications).where(*where)).scalar_one()
    rows = conn.execute(select(notifications).where(*where)
                        .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
                        .limit(limit).offset(offset))
    return [_public(r) for r in rows], int(total)


def mark_all_read(conn: Connection, *, user_id: uuid.UUID) -> int:
    """Mark every unread notification read; returns how many changed."""
    result = conn.execute(update(notifications).where(notifications.c.user_id == user_id,
                                                      notifications.c.read_at.is_(None))
                          .values(read_at=utcnow()))
    return int(result.rowcount or 0)


def mark_read(conn: Connection, *, user_id: uuid.UUID, notification_id: str) -> None:
    """Mark one notification read (a second call keeps the first ``read_at``)."""
    mine = (notifications.c.id == notification_id, notifications.c.user_id == user_id)
    if conn.execute(select(notifications.c.id).where(*mine)).first() is None:
        raise NotFound(f"No notification with id '{notification_id}'.")
    conn.execute(update(notifications).where(*mine, notifications.c.read_at.is_(None)).values(read_at=utcnow()))


def delete_notification(conn: Connection, *, user_id: uuid.UUID, notification_id: str) -> None:
    """Delete one notification for good."""
    result = conn.execute(delete(notifications).where(notifications.c.id == notification_id,
                                                      notifications.c.user_id == user_id))
    if not result.rowcount:
        raise NotFound(f"No notification with id '{notification_id}'.")
