"""The scheduler names the newest candle market data serves, and only executions that need a tick."""

from __future__ import annotations

import uuid

from capandex.db.session import transaction
from capandex.live.executions import start_execution, stop_execution
from capandex.live.scheduler import due_ticks
from tests.capandex.engine.factories import sma_cross_flow
from tests.capandex.live.helpers import make_flow

MINUTE, HOUR = 60_000, 3_600_000
T0 = 1_736_935_200_000  # 2025-01-15T10:00:00Z


def _mine(conn, execution, now_ms):
    return [m["candleMs"] for m in due_ticks(conn, now_ms) if m["executionId"] == execution]


def test_only_settled_candles_of_running_executions_are_due(configure, postgres_url):
    configure(DATABASE_URL=postgres_url)
    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, sma_cross_flow(3, 8), timeframe="1h")
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                    now_ms=T0 + 5 * MINUTE)["executionId"]  # last candle: 09:00
        assert _mine(conn, execution, T0 + 30 * MINUTE) == []  # 10:00 candle still open
        assert _mine(conn, execution, T0 + HOUR + 30 * 1000) == []  # closed 30 s ago: not served yet
        assert _mine(conn, execution, T0 + HOUR + MINUTE) == [T0]  # settled: due
        stop_execution(conn, user_id=user, execution_id=execution)
        assert _mine(conn, execution, T0 + 2 * HOUR) == []  # a stopped execution without an intent
