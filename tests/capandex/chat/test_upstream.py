"""Anthropic failures mapped to our errors: the real SDK against the loopback API."""

from __future__ import annotations

import asyncio

import pytest

from capandex.chat.upstream import error_before_stream, make_client
from capandex.config import Settings
from tests.utils.anthropic_server import AnthropicServer, status_reply

KEY = "sk-ant-api03-test"


async def _create(settings: Settings):
    client = make_client(KEY, settings)
    try:
        await client.messages.create(model=settings.anthropic_model, max_tokens=10, stream=True,
                                     messages=[{"role": "user", "content": "hi"}])
    finally:
        await client.close()


def _mapped(reply, api_keys=None):
    with AnthropicServer(api_keys=api_keys) as server:
        server.script(reply)
        settings = Settings(anthropic_base_url=server.url, anthropic_max_retries=0)
        with pytest.raises(Exception) as caught:
            asyncio.run(_create(settings))
    return error_before_stream(caught.value)


@pytest.mark.parametrize(("status", "ours", "code"), [
    (401, 400, "invalid_credentials"),
    (403, 400, "invalid_credentials"),
    (429, 429, "rate_limited"),
    (529, 503, "upstream_unavailable"),
    (500, 503, "upstream_unavailable"),
    (400, 502, "upstream_error"),
    (404, 502, "upstream_error"),
])
def test_status_mapping(status, ours, code):
    error = _mapped(status_reply(status, "upstream says no"))
    assert (error.status, error.code) == (ours, code)
    assert KEY not in error.message


def test_rate_limit_keeps_anthropics_retry_after_or_defaults():
    assert _mapped(status_reply(429, retry_after=42)).headers["Retry-After"] == "42"
    assert _mapped(status_reply(429)).headers["Retry-After"] == "30"


def test_other_4xx_keeps_anthropics_message():
    assert "prompt is too long" in _mapped(status_reply(400, "prompt is too long: 250000 tokens")).message


def test_unreachable_is_503():
    settings = Settings(anthropic_base_url="http://127.0.0.1:9", anthropic_max_retries=0,
                        anthropic_timeout_seconds=2)
    with pytest.raises(Exception) as caught:
        asyncio.run(_create(settings))
    assert error_before_stream(caught.value).status == 503
