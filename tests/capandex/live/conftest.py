"""Fixtures of the live engine tests."""

from __future__ import annotations

import pytest

from tests.capandex.live.helpers import EntryClock
from tests.capandex.live.scenario import open_scenario


@pytest.fixture
def binance_live(configure, postgres_url):
    """Issue 12's scenario live on the loopback Binance (:mod:`tests.capandex.live.scenario`)."""
    yield from open_scenario(configure, postgres_url)


@pytest.fixture
def entry_clock(monkeypatch):
    """The live engine's entry clock, which the tests' tick helpers move (:class:`EntryClock`)."""
    return EntryClock(monkeypatch)
