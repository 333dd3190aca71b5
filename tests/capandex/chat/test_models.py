"""Conversation rules (what Anthropic accepts) with every problem named."""

from __future__ import annotations

import pytest

from capandex.chat.models import MAX_CONVERSATION_CHARS, ChatMessageIn, check_conversation
from capandex.errors import ValidationFailed


def _msgs(*roles, content="x"):
    return [ChatMessageIn(role=r, content=content) for r in roles]


def test_alternating_user_first_and_last_is_accepted():
    check_conversation(_msgs("user"))
    check_conversation(_msgs("user", "assistant", "user"))


def test_every_problem_is_named():
    with pytest.raises(ValidationFailed) as caught:
        check_conversation(_msgs("assistant", "assistant", "user", "user", "assistant"))
    assert [d["field"] for d in caught.value.details] == [
        "messages.0.role", "messages.1.role", "messages.3.role", "messages.4.role"]


def test_total_size_is_limited():
    size = MAX_CONVERSATION_CHARS // 11 + 100
    with pytest.raises(ValidationFailed) as caught:
        check_conversation(_msgs(*(["user", "assistant"] * 5), "user", content="y" * size))
    assert caught.value.details[0]["field"] == "messages"
