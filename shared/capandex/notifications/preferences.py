"""Notification preferences (``profiles.notification_preferences``).

A user has no profile row until the first read or write of their preferences; reads fall back to
the defaults (every event on), and stored values are merged over the defaults so that an event
added later is on for existing users too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from capandex.db.schema import profiles, utcnow
from capandex.db.session import upsert_insert
from capandex.errors import ValidationFailed, field_problem

#: every preference key, each a boolean (the events of :mod:`capandex.notifications`)
PREFERENCE_KEYS = ("engine_start", "engine_stop", "trade_executed", "engine_error")
DEFAULT_PREFERENCES: dict[str, bool] = dict.fromkeys(PREFERENCE_KEYS, True)


def _merged(stored: Mapping[str, Any] | None) -> dict[str, bool]:
    prefs = dict(DEFAULT_PREFERENCES)
    for key, value in (stored or {}).items():
        if key in prefs and isinstance(value, bool):
            prefs[key] = value
    return prefs


def _insert_if_missing(conn: Connection, user_id: uuid.UUID, prefs: dict[str, bool]) -> None:
    """Create the profile row unless it exists (concurrent first writes must not fail)."""
    now = utcnow()
    conn.execute(upsert_insert(conn, profiles).values(user_id=user_id, notification_preferences=prefs,
                                         created_at=now, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["user_id"]))


def get_preferences(conn: Connection, *, user_id: uuid.UUID) -> dict[str, bool]:
    """The user's preferences: every key of :data:`PREFERENCE_KEYS`, defaults where unset."""
    stored = conn.execute(select(profiles.c.notification_preferences)
                          .where(profiles.c.user_id == user_id)).scalar()
    return _merged(stored)


def validate_preferences(raw: Any, *, field: str = "notification_preferences") -> dict[str, bool]:
    """Check a preferences object: known keys only, booleans only (``1`` or ``"true"`` are refused).

    Raises:
        ValidationFailed: ``details`` names every bad key as ``notification_preferences.<key>``.
    """
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{field} must be an object.",
                               details=[field_problem(field, "must be an object of booleans")])
    problems = []
    for key, value in raw.items():
        if key not in PREFERENCE_KEYS:
            problems.append(field_problem(f"{field}.{key}",
                                          f"unknown preference; known: {', '.join(PREFERENCE_KEYS)}"))
        elif not isinstance(value, bool):
            problems.append(field_problem(f"{field}.{key}", "must be true or false"))
    if problems:
        raise ValidationFailed(f"Invalid input: {', '.join(p['field'] for p in problems)}.", details=problems)
    return dict(raw)


def set_preferences(conn: Connection, *, user_id: uuid.UUID, changes: Mapping[str, Any]) -> dict[str, bool]:
    """Merge ``changes`` (validated) into the stored preferences; keys not sent keep their value.

    Returns the full preferences after the change.
    """
    changes = validate_preferences(changes)
    _insert_if_missing(conn, user_id, dict(DEFAULT_PREFERENCES))
    query = select(profiles.c.notification_preferences).where(profiles.c.user_id == user_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # read-modify-write of one JSON value
    prefs = {**_merged(conn.execute(query).scalar()), **changes}
    conn.execute(update(profiles).where(profiles.c.user_id == user_id)
                 .values(notification_preferences=prefs, updated_at=utcnow()))
    return prefs
