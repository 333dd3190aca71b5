"""Backtest request validation and work sizing (pure functions; the HTTP paths are in
tests/functions/engine/test_backtest_routes.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from capandex.backtests import BacktestCreate, validate_range
from capandex.backtests.jobs import max_concurrency
from capandex.backtests.service import MAX_CANDLES, estimate_seconds
from capandex.errors import ValidationFailed

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


def request(**overrides) -> BacktestCreate:
    return BacktestCreate(**{"flowId": "flow_1", "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
                             "startDate": "2025-01-01", "endDate": "2025-02-01", **overrides})


def test_dates_are_utc_epoch_ms() -> None:
    span = validate_range(request(startDate="2025-01-01T01:00:00+01:00", endDate="2025-01-02T00:00:00Z"), NOW)
    assert span.start_ms == 1_735_689_600_000 and span.end_ms == 1_735_776_000_000


@pytest.mark.parametrize(("overrides", "fields"), [
    ({"startDate": "soon", "endDate": "later"}, ["startDate", "endDate"]),
    ({"startDate": "2025-03-01"}, ["startDate"]),
    ({"endDate": "2025-06-02"}, ["endDate"]),
    ({"timeframe": "1m", "startDate": "2024-01-01", "endDate": "2025-01-02"}, ["endDate"]),
])
def test_every_date_problem_is_named(overrides: dict, fields: list[str]) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_range(request(**overrides), NOW)
    assert [d["field"] for d in info.value.details] == fields


def test_a_leap_year_of_minutes_is_allowed() -> None:
    span = validate_range(request(timeframe="1m", startDate="2024-01-01", endDate="2025-01-01"), NOW)
    assert (span.end_ms - span.start_ms) // 60_000 == MAX_CANDLES


def test_unknown_timeframe_is_rejected_by_the_model() -> None:
    with pytest.raises(ValueError):
        request(timeframe="2h")


def test_concurrency_follows_the_rate_limit() -> None:
    assert [max_concurrency(ms) for ms in (50, 110, 1000, 20, 5000)] == [5, 3, 1, 10, 1]


def test_estimate_counts_pages_at_the_exchange_pace() -> None:
    assert estimate_seconds(0, 0.5256, 50) == pytest.approx(0.5256)
    assert estimate_seconds(10, 0, 50) == pytest.approx(3.0)
