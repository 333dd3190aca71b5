"""Loopback servers for the keys tests, and the secret guard on every test here."""

from tests.utils.keys_fixtures import anthropic_api, binance, binance_env, signed_binance  # noqa: F401
from tests.utils.secret_guard import secret_guard  # noqa: F401
