"""Notifications and the notification preferences that gate them.

Events and their dashboard ``type`` (the reference filters by ``trade``, ``engine``, ``system``,
while the preferences are keyed by event):

============== ========== =========================================================
event          type       written when
============== ========== =========================================================
engine_start   engine     an execution starts (paper or live)
engine_stop    engine     an execution is stopped by its user
trade_executed trade      an order of an execution filled (paper or live)
engine_error   engine     a tick failed (exchange error, insufficient balance, ...)
============== ========== =========================================================

Each row stores both: ``type`` for the dashboard's filter and ``event`` (the preference key) as
the reason. ``GET /api/notifications?type=`` accepts either a type or an event name. ``system``
is reserved for messages not tied to a preference (none are written yet).
"""

from capandex.notifications.preferences import (
    DEFAULT_PREFERENCES,
    PREFERENCE_KEYS,
    get_preferences,
    set_preferences,
)
from capandex.notifications.repository import (
    EVENT_TYPES,
    TYPES,
    delete_notification,
    list_notifications,
    mark_all_read,
    mark_read,
    notify,
)

__all__ = ["DEFAULT_PREFERENCES", "EVENT_TYPES", "PREFERENCE_KEYS", "TYPES", "delete_notification",
           "get_preferences", "list_notifications", "mark_all_read", "mark_read", "notify",
           "set_preferences"]
