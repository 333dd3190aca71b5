"""One chat answer: prepare, open the Anthropic stream, relay it as SSE, save it.

:func:`start_chat` does everything that can still fail with an HTTP status, in this order:

1. the conversation rules (422 naming ``messages.<i>.role``);
2. one short transaction: the flow is the user's (404), the user has a saved Anthropic key
   (400), and the user's rate limit (429);
3. the request to Anthropic, up to its first event (401/429/529 … → see :mod:`.upstream`); when
   Anthropic rejects the saved key (401/403) it is also marked invalid (``isValid: false`` in
   ``GET /api/ai-keys``);
4. with ``flowId``, one short transaction saving the user's (last) message.

It then returns the body: an async generator of SSE lines relayed as Anthropic sends them (no
buffering, and no database transaction open while it runs). When it ends — normally, on an
upstream failure, or because the client went away — one last transaction saves the assistant's
message, ``partial=True`` unless the answer completed.

Tool use: the model may call ``propose_flow_change`` (:mod:`.patch`). A valid proposal is sent
as ``{"flowPatch": …}`` and ends the answer; an invalid one is never sent: a short note is, and
the validator's problems go back to the model as the tool result, for at most
:data:`MAX_TOOL_ROUNDS` more requests.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio

from capandex.chat import repository, sse
from capandex.chat.models import ChatRequest, check_conversation
from capandex.chat.patch import TOOL, TOOL_NAME, propose
from capandex.chat.prompt import build_system_prompt
from capandex.chat.upstream import (
    StreamBroken,
    error_before_stream,
    interrupted,
    key_rejected,
    make_client,
    stream_error,
)
from capandex.config import Settings, get_settings
from capandex.errors import BadRequest, ValidationFailed
from capandex.ratelimit import CHAT, consume

if TYPE_CHECKING:
    from anthropic.types import MessageParam, ToolParam

logger = logging.getLogger("capandex.chat")

#: Follow-up requests after a rejected proposal (each lets the model correct it once).
MAX_TOOL_ROUNDS = 2


@dataclass
class Turn:
    """What one answer needs, gathered before the stream starts."""

    user_id: uuid.UUID
    flow_id: str | None
    flow: dict[str, Any] | None
    api_key: str = field(repr=False)  # the user's Anthropic key: never in a repr
    system: str
    messages: list[dict[str, Any]]
    key_id: str = ""  # its ai_keys record (a 401 marks that record invalid, not a key saved since)


@dataclass
class Answer:
    """What has been sent so far (saved when the stream ends)."""

    text: list[str] = field(default_factory=list)
    flow_patch: dict[str, Any] | None = None
    complete: bool = False


async def start_chat(*, user_id: uuid.UUID, request: ChatRequest,
                     settings: Settings | None = None) -> AnswerStream:
    """Check, open the upstream stream and return the SSE body (see the module docstring)."""
    settings = settings or get_settings()
    check_conversation(request.messages)
    turn = await anyio.to_thread.run_sync(partial(_prepare, user_id, request, settings))
    # Building the client imports the SDK on the first request: seconds of CPU, which on the event
    # loop would stall every other answer being streamed by this process.
    relay = await anyio.to_thread.run_sync(Relay, turn, settings)
    await relay.open()
    if turn.flow_id is not None:
        try:
            await anyio.to_thread.run_sync(partial(_save, turn, turn.flow_id, "user", request.messages[-1].content))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await relay.close()
            raise
    return AnswerStream(relay)


class AnswerStream:
    """The SSE body: ``relay.sse()``, plus a close that also releases the upstream request when
    the body was never iterated (the client left before the response started)."""

    def __init__(self, relay: Relay) -> None:
        self.relay, self._body = relay, relay.sse()

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> str:
        return await self._body.__anext__()

    async def aclose(self) -> None:
        await self._body.aclose()
        await self.relay.close()


def _prepare(user_id: uuid.UUID, request: ChatRequest, settings: Settings) -> Turn:
    from capandex.db.session import transaction
    from capandex.keys.ai import load_saved_ai_key

    with transaction(user_id) as conn:
        saved = repository.flow_document(conn, user_id=user_id, flow_id=request.flowId) if request.flowId else None
        key = load_saved_ai_key(conn, user_id=user_id)
        if key is None:
            raise BadRequest("No Anthropic API key is saved for your account: add one with POST /api/ai-keys "
                             "to use the assistant.")
    consume(CHAT, user_id=user_id, settings=settings)  # its own transaction (capandex.ratelimit)
    # The editor's current (possibly unsaved) state wins over the saved document.
    flow = request.flowContext.model_dump(exclude_none=True) if request.flowContext else saved
    return Turn(user_id=user_id, flow_id=request.flowId, flow=flow, api_key=key.api_key, key_id=key.id,
                system=build_system_prompt(flow),
                messages=[{"role": m.role, "content": m.content} for m in request.messages])


def _save(turn: Turn, flow_id: str, role: str, content: str, *, partial: bool = False,
          flow_patch: dict[str, Any] | None = None) -> None:
    """Keep one message of the flow's chat (a chat about no saved flow keeps none)."""
    from capandex.db.session import transaction

    with transaction(turn.user_id) as conn:
        repository.add_message(conn, user_id=turn.user_id, flow_id=flow_id, role=role, content=content,
                               partial=partial, flow_patch=flow_patch)


def _mark_key_invalid(turn: Turn) -> None:
    """Record that Anthropic rejected the saved key (best effort: the 400 is what matters)."""
    from capandex.db.session import transaction
    from capandex.keys.ai import record_validation

    try:
        with transaction(turn.user_id) as conn:
            record_validation(conn, user_id=turn.user_id, record_id=turn.key_id, valid=False)
    except Exception:
        logger.exception("recording the rejected Anthropic key failed")


class Relay:
    """Anthropic's event stream, relayed as our SSE body (one instance per answer)."""

    def __init__(self, turn: Turn, settings: Settings) -> None:
        self.turn, self.settings = turn, settings
        self.client = make_client(turn.api_key, settings)
        self.stream: Any = None
        self.first: Any = None
        self.answer = Answer()

    async def open(self) -> None:
        """Send the request and wait for Anthropic's first event; HTTP errors are raised mapped."""
        try:
            self.stream, self.first = await self._request(self.turn.messages)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self.client.close()
            if isinstance(exc, Exception):
                if key_rejected(exc):
                    await anyio.to_thread.run_sync(partial(_mark_key_invalid, self.turn))
                raise error_before_stream(exc) from exc
            raise

    async def _request(self, messages: list[dict[str, Any]]) -> tuple[Any, Any]:
        # our messages and tool are the API's JSON shapes, built and checked here as plain dicts
        stream = await self.client.messages.create(
            model=self.settings.anthropic_model, max_tokens=self.settings.anthropic_max_tokens,
            system=self.turn.system, messages=cast("list[MessageParam]", messages),
            tools=[cast("ToolParam", TOOL)], stream=True)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            await stream.close()
            raise interrupted() from None
        except BaseException:
            await stream.close()
            raise
        return stream, first

    async def sse(self) -> AsyncGenerator[str, None]:
        """The response body; saves the answer however it ends."""
        try:
            try:
                async with aclosing(self._rounds()) as payloads:
                    async for payload in payloads:
                        yield sse.event(payload)
                self.answer.complete = True
            except StreamBroken as broken:
                logger.warning("chat stream broken", extra={"code": broken.code})
                yield sse.event(broken.to_event())
            except Exception:  # a bug: still end the stream the documented way
                logger.exception("chat stream failed")
                yield sse.event({"error": {"code": "internal_error",
                                           "message": "Something went wrong on our side; it has been logged."}})
            yield sse.DONE
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()
                await self._save_answer()

    async def close(self) -> None:
        """Release the upstream response and the client (idempotent)."""
        if self.stream is not None:
            await self.stream.close()
            self.stream = None
        if not self.client.is_closed():
            await self.client.close()

    async def _save_answer(self) -> None:
        # An answer cut before its first word has nothing to keep (and an empty assistant turn
        # would make the saved history invalid to send back).
        if self.turn.flow_id is None or not (self.answer.text or self.answer.flow_patch):
            return
        try:
            await anyio.to_thread.run_sync(partial(
                _save, self.turn, self.turn.flow_id, "assistant", "".join(self.answer.text),
                partial=not self.answer.complete, flow_patch=self.answer.flow_patch))
        except Exception:  # the client has its answer; a lost save is logged, not raised into the stream
            logger.exception("saving the assistant message failed")

    async def _rounds(self) -> AsyncGenerator[dict[str, Any], None]:
        messages = list(self.turn.messages)
        for round_number in range(MAX_TOOL_ROUNDS + 1):
            response = Response()
            async for payload in self._relay_one(response):
                yield payload
            if not response.rejected or round_number == MAX_TOOL_ROUNDS:
                return
            messages += [{"role": "assistant", "content": response.content_blocks()},
                         {"role": "user", "content": response.tool_results}]
            await self.stream.close()
            self.stream = None
            try:
                self.stream, self.first = await self._request(messages)
            except Exception as exc:
                raise stream_error(exc) from exc

    async def _relay_one(self, response: Response) -> AsyncGenerator[dict[str, Any], None]:
        """Relay one Anthropic response (starting at ``self.first``)."""
        event = self.first
        while True:
            for payload in response.on_event(event, self.turn.flow):
                if "text" in payload:
                    self.answer.text.append(payload["text"])
                if "flowPatch" in payload:
                    self.answer.flow_patch = payload["flowPatch"]
                yield payload
            if response.stopped:
                return
            try:
                event = await anext(self.stream)
            except StopAsyncIteration:
                raise interrupted() from None  # the body ended without message_stop
            except Exception as exc:
                raise stream_error(exc) from exc


@dataclass
class Block:
    """One content block of a response as it streams in: text, or a tool call and its JSON input."""

    type: str
    text: str = ""
    tool_id: str = ""
    name: str = ""
    json: str = ""
    input: dict[str, Any] = field(default_factory=dict)


@dataclass
class Response:
    """The state of one Anthropic response: its content blocks and the tool results owed."""

    blocks: dict[int, Block] = field(default_factory=dict)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    rejected: bool = False
    stopped: bool = False

    def on_event(self, event: Any, flow: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Our payloads for one upstream event (usually none or one)."""
        kind = event.type
        if kind == "content_block_start":
            block = event.content_block
            self.blocks[event.index] = Block(type=block.type, tool_id=getattr(block, "id", ""),
                                             name=getattr(block, "name", ""), text=getattr(block, "text", "") or "")
            if self.blocks[event.index].text:
                return [{"text": self.blocks[event.index].text}]
        elif kind == "content_block_delta":
            block, delta = self.blocks.get(event.index), event.delta
            if block is not None and delta.type == "text_delta" and delta.text:
                block.text += delta.text
                return [{"text": delta.text}]
            if block is not None and delta.type == "input_json_delta":
                block.json += delta.partial_json
        elif kind == "content_block_stop":
            block = self.blocks.get(event.index)
            if block is not None and block.type == "tool_use":
                return self._tool_call(block, flow)
        elif kind == "message_stop":
            self.stopped = True
        return []

    def _tool_call(self, block: Block, flow: dict[str, Any] | None) -> list[dict[str, Any]]:
        try:
            block.input = json.loads(block.json or "{}")
            if block.name != TOOL_NAME:
                raise ValidationFailed(f"unknown tool '{block.name}'", details=[])
            proposal = propose(flow, block.input)
        except (ValueError, ValidationFailed) as exc:  # JSONDecodeError is a ValueError
            return self._rejected(block, exc)
        self.tool_results.append({"type": "tool_result", "tool_use_id": block.tool_id,
                                  "content": "Valid: shown to the user, who decides whether to apply it."})
        return [{"flowPatch": proposal}]

    def _rejected(self, block: Block, exc: Exception) -> list[dict[str, Any]]:
        self.rejected = True
        if not isinstance(block.input, dict):
            block.input = {}
        problems = getattr(exc, "details", None) or []
        reason = getattr(exc, "message", None) or "its input is not valid JSON"
        self.tool_results.append({"type": "tool_result", "tool_use_id": block.tool_id, "is_error": True,
                                  "content": json.dumps({"rejected": reason, "problems": problems[:50]})})
        return [{"text": f"\n\n[The proposed flow change was not shown: {reason}.]\n\n"}]

    def content_blocks(self) -> list[dict[str, Any]]:
        """This response as the assistant turn of a follow-up request."""
        out: list[dict[str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            if block.type == "text" and block.text:
                out.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                out.append({"type": "tool_use", "id": block.tool_id, "name": block.name, "input": block.input})
        return out
