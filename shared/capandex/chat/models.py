"""Chat request and response bodies, and the conversation rules Anthropic imposes.

Field limits sit on the fields; the rules that span messages (the first and the last message
are the user's, roles alternate, the total size) are checked by :func:`check_conversation`,
which names every offending message as ``messages.<index>.<field>``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from capandex.errors import ValidationFailed, field_problem
from capandex.flows.models import FlowBody
from capandex.models import RequestModel, ResponseModel, schema_examples

#: Most messages in one request (older turns should be dropped by the client).
MAX_MESSAGES = 100
#: Longest single message, in characters.
MAX_MESSAGE_CHARS = 20_000
#: Longest conversation (all messages together), in characters (~50k tokens).
MAX_CONVERSATION_CHARS = 200_000


class ChatMessageIn(RequestModel):
    """One turn of the conversation: plain text (no images or content blocks). Whitespace is kept
    as sent (indentation in pasted code matters), but a turn of only whitespace is empty."""

    model_config = ConfigDict(str_strip_whitespace=False)

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, content: str) -> str:
        if not content.strip():
            raise ValueError("must not be empty")
        return content


class FlowContext(FlowBody):
    """The flow as the editor holds it right now (it may be unsaved and not yet valid).

    Unknown top-level keys are ignored rather than refused: the editor sends its whole state
    (``id``, ``viewport`` …), and none of it changes the answer.
    """

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=200)


class ChatRequest(RequestModel):
    """``POST /api/chat``."""

    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: {
        "messages": [{"role": "user", "content": "Why does my flow never buy?"}],
        "flowId": "flow_0b4c2a9e5d1f4f6aa3c8e2b7d9f01234"}))

    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    flowContext: FlowContext | None = None
    flowId: str | None = Field(default=None, min_length=1, max_length=64)


class ChatMessagePublic(ResponseModel):
    id: str
    role: str
    content: str
    created_at: str
    #: True when the answer was cut (client disconnect or upstream failure).
    partial: bool = False
    #: The validated flow change streamed with this answer, if any (see capandex.chat.patch).
    flow_patch: dict[str, Any] | None = None


class ChatMessagesPublic(ResponseModel):
    messages: list[ChatMessagePublic]


def check_conversation(messages: list[ChatMessageIn]) -> None:
    """Raise :class:`ValidationFailed` unless the messages form a turn Anthropic accepts.

    The conversation must start and end with the user (the answer continues it), roles must
    alternate, and the total must stay under :data:`MAX_CONVERSATION_CHARS`.
    """
    problems = []
    if messages[0].role != "user":
        problems.append(field_problem("messages.0.role", "the conversation must start with a user message"))
    for index in range(1, len(messages)):
        if messages[index].role == messages[index - 1].role:
            problems.append(field_problem(f"messages.{index}.role",
                                          f"roles must alternate; two '{messages[index].role}' messages in a row"))
    if messages[-1].role != "user":
        problems.append(field_problem(f"messages.{len(messages) - 1}.role",
                                      "the last message must be the user's (the answer follows it)"))
    total = sum(len(m.content) for m in messages)
    if total > MAX_CONVERSATION_CHARS:
        problems.append(field_problem("messages", f"the conversation is {total} characters long; "
                                      f"the limit is {MAX_CONVERSATION_CHARS}: drop older messages"))
    if problems:
        raise ValidationFailed(f"Invalid input: {', '.join(p['field'] for p in problems)}.", details=problems)
