"""Request and response models of the notification and preference routes."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from capandex.models import RequestModel, ResponseModel, schema_examples
from capandex.notifications.preferences import PREFERENCE_KEYS


class NotificationPublic(ResponseModel):
    id: str
    type: str
    event: str | None  # the preference key that produced it (engine_start, trade_executed, ...)
    title: str
    message: str
    read_at: str | None
    action_url: str | None
    created_at: str


class NotificationsPublic(ResponseModel):
    notifications: list[NotificationPublic]
    total: int


class Preferences(ResponseModel):
    engine_start: bool
    engine_stop: bool
    trade_executed: bool
    engine_error: bool


class PreferencesPublic(ResponseModel):
    notification_preferences: Preferences


class PreferencesUpdate(RequestModel):
    """Keys not sent keep their value; keys and values are checked by
    :func:`capandex.notifications.preferences.validate_preferences` (422 naming each bad key)."""

    model_config = ConfigDict(json_schema_extra=schema_examples(
        lambda: {"notification_preferences": {"trade_executed": False, "engine_error": True}}))

    notification_preferences: dict[str, Any] = Field(json_schema_extra={
        "type": "object", "additionalProperties": False,
        "properties": {key: {"type": "boolean"} for key in PREFERENCE_KEYS}})
