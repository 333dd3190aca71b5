"""Fixtures: the loopback Binance and settings pointed at it."""

from tests.utils.fixtures import binance, binance_env  # noqa: F401
