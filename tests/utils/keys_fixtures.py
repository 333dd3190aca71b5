"""Fixtures for the vault/keys tests (import them into a conftest.py; ``binance_env`` is suite-wide):

    from tests.utils.keys_fixtures import anthropic_api, signed_binance  # noqa: F401

- ``signed_binance``: the loopback Binance (``binance_env``) with the signed account endpoints of
  :mod:`tests.utils.binance_signed`; returns the :class:`SignedBinance` (``.server``, ``.add_account``).
- ``anthropic_api``: the loopback Models API with settings pointed at it (``ANTHROPIC_BASE_URL``);
  returns the :class:`AnthropicModelsServer` (add valid keys to ``.keys``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.utils.anthropic_models import AnthropicModelsServer
from tests.utils.binance_server import BinanceServer
from tests.utils.binance_signed import SignedBinance


@pytest.fixture
def signed_binance(binance_env: BinanceServer) -> SignedBinance:
    return SignedBinance(binance_env)


@pytest.fixture
def anthropic_api(configure) -> Iterator[AnthropicModelsServer]:
    with AnthropicModelsServer() as server:
        configure(ANTHROPIC_BASE_URL=server.url)
        yield server
