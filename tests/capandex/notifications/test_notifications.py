"""Notifications and preferences on both databases (SQLite has no RLS: the owner filters are the guard)."""

from __future__ import annotations

import uuid

import pytest

from capandex.db.session import transaction
from capandex.errors import NotFound, ValidationFailed
from capandex.notifications import (
    EVENT_TYPES,
    get_preferences,
    list_notifications,
    mark_read,
    notify,
    set_preferences,
)


def test_types_follow_the_documented_mapping():
    assert EVENT_TYPES == {"engine_start": "engine", "engine_stop": "engine", "engine_error": "engine",
                           "trade_executed": "trade"}


def test_preferences_gate_and_ownership(configure, database_url):
    configure(DATABASE_URL=database_url)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    with transaction() as conn:
        assert all(get_preferences(conn, user_id=alice).values())
        set_preferences(conn, user_id=alice, changes={"engine_start": False})
        set_preferences(conn, user_id=alice, changes={"engine_stop": False})  # merges, keeps engine_start off
        assert notify(conn, user_id=alice, event="engine_start", title="t", message="m") is None
        assert notify(conn, user_id=alice, event="engine_stop", title="t", message="m") is None
        kept = notify(conn, user_id=alice, event="trade_executed", title="t", message="m")
        items, total = list_notifications(conn, user_id=alice)
        assert total == 1 and items[0]["id"] == kept and items[0]["type"] == "trade"
        assert list_notifications(conn, user_id=bob) == ([], 0)
        with pytest.raises(NotFound):
            mark_read(conn, user_id=bob, notification_id=kept)
        with pytest.raises(ValidationFailed) as info:
            set_preferences(conn, user_id=alice, changes={"engine_start": "no", "x": True})
        assert {d["field"] for d in info.value.details} == {"notification_preferences.engine_start",
                                                            "notification_preferences.x"}
        with pytest.raises(ValueError):
            notify(conn, user_id=alice, event="unknown", title="t", message="m")
