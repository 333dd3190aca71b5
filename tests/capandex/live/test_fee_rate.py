"""The live gateway charges the flow's own fee rate; 0 is a real setting, not "unset"."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from capandex.live.running import fee_rate


@pytest.mark.parametrize(("settings", "expected"), [
    ({"feeRate": 0}, 0.0), ({"feeRate": 0.00075}, 0.00075), ({}, 0.001), (None, 0.001)])
def test_fee_rate_of_the_flow(settings, expected) -> None:
    row = SimpleNamespace(state={"document": {"settings": settings}})
    assert fee_rate(row) == expected
