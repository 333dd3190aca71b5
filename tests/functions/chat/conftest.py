"""Fixtures: the loopback Anthropic API and the chat function on real Postgres."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Api
from tests.utils.anthropic_server import AnthropicServer
from tests.utils.chat import GOOD_KEY


@pytest.fixture
def upstream() -> Iterator[AnthropicServer]:
    with AnthropicServer(api_keys={GOOD_KEY}) as server:
        yield server


@pytest.fixture
def chat_env(configure, postgres_url: str, upstream: AnthropicServer) -> dict[str, str]:
    """Settings for the chat tests: Postgres, the loopback Anthropic, no SDK retries."""
    env = {"DATABASE_URL": postgres_url, "ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_MAX_RETRIES": "0",
           "ANTHROPIC_TIMEOUT_SECONDS": "10", "CAPANDEX_CHAT_RATE_BURST": "20"}
    configure(**env)
    return env


@pytest.fixture
def api(chat_env) -> Iterator[Api]:
    """The gateway with only the chat function (other functions' work in progress cannot break these tests)."""
    from fastapi.testclient import TestClient

    from capandex.api.gateway import Gateway

    with TestClient(Gateway(["chat"]), raise_server_exceptions=False) as client:
        yield Api(client)
