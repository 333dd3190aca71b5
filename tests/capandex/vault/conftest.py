"""Loopback servers for the keys tests (the secret guard and the loopback Binance are suite-wide:
tests/conftest.py)."""

from tests.utils.keys_fixtures import anthropic_api, signed_binance  # noqa: F401
