"""A loopback Anthropic Messages API (``POST /v1/messages``) that streams the real wire format.

The real ``anthropic`` SDK talks to it over real HTTP/1.1 (chunked transfer encoding, as the
API answers). Each test scripts the replies, in order, one per request::

    with AnthropicServer() as upstream:
        upstream.script(text_reply("I can ", "help."))
        ...
        assert upstream.requests[0].body["model"] == "claude-sonnet-5-5"

Wire format (https://docs.anthropic.com/en/api/messages-streaming): every event is
``event: <type>\\ndata: <json>\\n\\n``; a response is message_start, then per content block
content_block_start / content_block_delta (``text_delta`` or ``input_json_delta``) /
content_block_stop, then message_delta (stop_reason, usage) and message_stop, with ``ping``
events anywhere. A failure after the 200 is an ``error`` event; a failure before it is an HTTP
status with ``{"type": "error", "error": {"type", "message"}, "request_id"}`` and a
``request-id`` header (429 and 529 also send ``retry-after``).

Faults a script can inject: :func:`status_reply` (401, 429, 529 …), :class:`ErrorEvent` mid
stream, :class:`Cut` (the socket is closed mid-body, no terminating chunk), :class:`Pause` and
:class:`Gate` (hold the rest of the stream until the test releases it). The server also
checks what Anthropic checks for the parts the chat relies on (the API key, the version header,
alternating roles starting with the user, a tool_result for every tool_use) and answers 400
``invalid_request_error`` otherwise, so a malformed follow-up request fails the test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.utils.http_server import QuietHTTPServer

MODEL = "claude-sonnet-5-5"


@dataclass
class Event:
    """One SSE event, written as ``event: name`` + ``data: json``."""

    name: str
    data: dict[str, Any]


@dataclass
class Pause:
    seconds: float


@dataclass
class Gate:
    """Wait (at most ``timeout`` seconds) until the test sets ``event`` before sending the rest."""

    event: threading.Event = field(default_factory=threading.Event)
    timeout: float = 10.0


@dataclass
class Cut:
    """Close the socket mid-body, as a dropped connection does."""


@dataclass
class ErrorEvent:
    """Anthropic's in-stream error event (``overloaded_error``, ``api_error`` …)."""

    type: str = "overloaded_error"
    message: str = "Overloaded"


Step = Event | Pause | Gate | Cut | ErrorEvent


@dataclass
class StreamReply:
    steps: list[Step]


@dataclass
class StatusReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


Reply = StreamReply | StatusReply


@dataclass
class Recorded:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        return api_key_of(self.headers)


def api_key_of(headers: dict[str, str]) -> str | None:
    """The key as sent: ``x-api-key`` (the classic header) or ``Authorization: Bearer`` (what the
    installed SDK sends for ``api_key=``); the API accepts both."""
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# --- reply builders ------------------------------------------------------------------------

def _message_start(input_tokens: int = 25) -> Event:
    return Event("message_start", {"type": "message_start", "message": {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "content": [],
        "model": MODEL, "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})


_PING = Event("ping", {"type": "ping"})


def _message_end(stop_reason: str, output_tokens: int = 10) -> list[Step]:
    return [Event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                    "usage": {"output_tokens": output_tokens}}),
            Event("message_stop", {"type": "message_stop"})]


def text_block(index: int, chunks: Iterable[str | Step]) -> list[Step]:
    """A text content block; ``chunks`` are text deltas, with any :data:`Step` between them."""
    steps: list[Step] = [Event("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "text", "text": ""}})]
    for chunk in chunks:
        if isinstance(chunk, str):
            steps.append(Event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta", "text": chunk}}))
        else:
            steps.append(chunk)
    steps.append(Event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return steps


def tool_block(index: int, tool_input: dict[str, Any] | str, *, name: str = "propose_flow_change",
               pieces: int = 3, tool_id: str | None = None) -> list[Step]:
    """A tool_use block whose JSON input arrives in ``pieces`` input_json_delta events, after an
    empty one (the API's first ``partial_json`` is ``""``)."""
    raw = tool_input if isinstance(tool_input, str) else json.dumps(tool_input)
    size = max(1, -(-len(raw) // pieces))
    block = {"type": "tool_use", "id": tool_id or f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": {}}
    steps: list[Step] = [Event("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": block})]
    for piece in ["", *(raw[start:start + size] for start in range(0, len(raw), size))]:
        steps.append(Event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta", "partial_json": piece}}))
    steps.append(Event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return steps


def text_reply(*chunks: str | Step, stop_reason: str = "end_turn") -> StreamReply:
    """A complete streamed answer made of text deltas, with pings where the API sends them (right
    after message_start, and between events)."""
    return StreamReply([_message_start(), _PING, *text_block(0, chunks), _PING, *_message_end(stop_reason)])


def tool_reply(tool_input: dict[str, Any] | str, *, text: Iterable[str] = ("Here is a proposal.",),
               name: str = "propose_flow_change") -> StreamReply:
    """Text, then a tool call; stop_reason ``tool_use``."""
    return StreamReply([_message_start(), *text_block(0, text), *tool_block(1, tool_input, name=name),
                        *_message_end("tool_use")])


def partial_reply(*steps: str | Step) -> StreamReply:
    """message_start and a text block that is not finished: follow with :class:`Cut` or
    :class:`ErrorEvent` (strings are text deltas)."""
    out: list[Step] = [_message_start(), Event("content_block_start", {
        "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    for step in steps:
        out.append(Event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": step}})
                   if isinstance(step, str) else step)
    return StreamReply(out)


_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                 500: "api_error", 529: "overloaded_error"}


def status_reply(status: int, message: str | None = None, *, retry_after: int | None = None) -> StatusReply:
    """An HTTP error exactly as the API sends it (body, ``request-id``, optional ``retry-after``)."""
    kind = _STATUS_TYPES.get(status, "api_error")
    messages = {401: "invalid x-api-key", 429: "Number of request tokens has exceeded your per-minute rate limit",
                529: "Overloaded"}
    body = {"type": "error", "error": {"type": kind, "message": message or messages.get(status, kind)},
            "request_id": f"req_{uuid.uuid4().hex[:24]}"}
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return StatusReply(status, body, headers)


# --- the server ------------------------------------------------------------------------------

class AnthropicServer:
    """``POST /v1/messages`` on 127.0.0.1 at a free port; scripted replies, recorded requests.

    ``api_keys``: when given, any other ``x-api-key`` is answered 401 like the real API.
    A request with no scripted reply left gets a 500 ``api_error`` (and fails the test visibly).
    """

    def __init__(self, api_keys: Iterable[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        #: Set when a scripted stream has been fully written (or cut): the upstream "finished".
        self.finished = threading.Event()
        #: Set when writing to a client failed because it had gone away.
        self.client_gone = threading.Event()
        self._lock = threading.Lock()
        self.httpd = QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="anthropic-loopback")
        self._gates: list[Gate] = []

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self.replies.extend(replies)
            for reply in replies:
                if isinstance(reply, StreamReply):
                    self._gates += [s for s in reply.steps if isinstance(s, Gate)]

    def _next_reply(self) -> Reply:
        with self._lock:
            if self.replies:
                return self.replies.pop(0)
        return status_reply(500, "no scripted reply left")

    def __enter__(self) -> AnthropicServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for gate in self._gates:  # never leave a handler thread waiting
            gate.event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append(Recorded(self.path, headers, body))
                if self.path.split("?")[0] != "/v1/messages":
                    self._status(status_reply(404, f"no route {self.path}"))
                    return
                problem = outer._check(headers, body)
                if problem is not None:
                    self._status(problem)
                    return
                reply = outer._next_reply()
                if isinstance(reply, StatusReply):
                    self._status(reply)
                else:
                    self._stream(reply)

            def _status(self, reply: StatusReply) -> None:
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", reply.body.get("request_id", "req_loopback"))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, reply: StreamReply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
                self.end_headers()
                try:
                    for step in reply.steps:
                        if not self._step(step):
                            return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    outer.client_gone.set()
                    self.close_connection = True
                finally:
                    outer.finished.set()

            def _step(self, step: Step) -> bool:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                elif isinstance(step, Gate):
                    step.event.wait(step.timeout)
                elif isinstance(step, Cut):
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return False
                elif isinstance(step, ErrorEvent):
                    self._chunk("error", {"type": "error", "error": {"type": step.type, "message": step.message}})
                else:
                    self._chunk(step.name, step.data)
                return True

            def _chunk(self, name: str, data: dict[str, Any]) -> None:
                payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _check(self, headers: dict[str, str], body: dict[str, Any]) -> StatusReply | None:
        """What the real API would refuse, for the parts the chat relies on."""
        key = api_key_of(headers)
        if not key or (self.api_keys is not None and key not in self.api_keys):
            return status_reply(401)
        if not headers.get("anthropic-version"):
            return status_reply(400, "anthropic-version: header is required")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return status_reply(400, f"{name}: Field required")
        return _check_messages(body["messages"])


def _check_messages(messages: list[dict[str, Any]]) -> StatusReply | None:
    if not messages or messages[0].get("role") != "user":
        return status_reply(400, "messages: first message must use the \"user\" role")
    for i, message in enumerate(messages):
        if i and message.get("role") == messages[i - 1].get("role"):
            return status_reply(400, "messages: roles must alternate between \"user\" and \"assistant\"")
        content = message.get("content")
        if content in ("", []):
            return status_reply(400, f"messages.{i}: all messages must have non-empty content")
        if message.get("role") == "assistant" and isinstance(content, list):
            tool_ids = {b["id"] for b in content if b.get("type") == "tool_use"}
            following = messages[i + 1]["content"] if i + 1 < len(messages) else []
            answered = {b.get("tool_use_id") for b in following if isinstance(b, dict)
                        and b.get("type") == "tool_result"} if isinstance(following, list) else set()
            if tool_ids - answered:
                return status_reply(400, f"messages.{i + 1}: tool_use ids were found without tool_result "
                                         f"blocks immediately after: {sorted(tool_ids - answered)}")
    return None
