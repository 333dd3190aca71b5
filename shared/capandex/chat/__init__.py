"""The AI assistant: flow-aware chat streamed from Anthropic as Server-Sent Events.

- :mod:`.models` — request/response bodies and the conversation rules;
- :mod:`.prompt` — the system prompt and the compact rendering of the user's flow;
- :mod:`.service` — :func:`~.service.start_chat`: checks, opens the upstream stream, relays it;
- :mod:`.upstream` — the Anthropic client and the error mapping (before and during the stream);
- :mod:`.patch` — the ``propose_flow_change`` tool: patch format, application, validation;
- :mod:`.repository` — saved messages per flow; per-user rate limits: :mod:`capandex.ratelimit`;
- :mod:`.sse` — the event format and the streaming response.

Nothing here imports ``anthropic`` at module level (cold start): the SDK is loaded on the first
chat request.
"""

from capandex.chat.service import start_chat

__all__ = ["start_chat"]
