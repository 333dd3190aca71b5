"""Factories for the live engine tests: a user with a flow (started on paper), and candle sources over
fixed data."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from capandex.engine import Candles


def make_flow(conn: Any, user_id: uuid.UUID, document: dict[str, Any], *, timeframe: str = "1h",
              symbol: str = "BTC/USDT", exchange: str = "binance") -> str:
    from capandex.flows import repository

    document = {**document, "settings": {"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                                         **document.get("settings", {})}}
    return repository.create_flow(conn, user_id=user_id, name=document.get("name", "Test flow"),
                                  document=document)["id"]


def start_paper(document: dict[str, Any], candles: Candles) -> tuple[uuid.UUID, str]:
    """A new user's flow started on paper at ``candles``' first candle: ``(user, execution id)``;
    its first tick is the candle after it."""
    from capandex.db.session import transaction
    from capandex.live.executions import start_execution

    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, document)
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                    now_ms=int(candles.time[0]))["executionId"]
    return user, execution


def add_key(conn: Any, user_id: uuid.UUID, exchange: str = "binance") -> str:
    """A valid exchange key row of ``user_id`` (sealing nothing: the tests hand the gateway its
    client); its id."""
    from capandex.db.schema import exchange_keys, new_id
    from capandex.timeutil import utcnow

    key_id = new_id("key")
    conn.execute(exchange_keys.insert().values(id=key_id, user_id=user_id, exchange=exchange, label="test",
                                               api_key_hint="k…", sealed={}, is_valid=True, created_at=utcnow()))
    return key_id


class EntryClock:
    """"Now" for the live engine's entry freshness (:mod:`capandex.live.entries`). These tests tick
    candles of the past; their tick helpers set it, before each tick, to when that candle's tick runs
    in production — right after the candle settled (:meth:`at_settle`). Unset, it is the real clock."""

    def __init__(self, monkeypatch: Any) -> None:
        from capandex.live import entries
        from capandex.timeutil import now_ms

        self.now_ms: int | None = None
        monkeypatch.setattr(entries, "now_ms", lambda: now_ms() if self.now_ms is None else self.now_ms)

    def at_settle(self, candle_ms: int, tf_ms: int = 3_600_000) -> None:
        """A second after the candle opening at ``candle_ms`` settled (closed + ``SETTLE_MS``)."""
        from capandex.marketdata.chunks import SETTLE_MS

        self.now_ms = candle_ms + tf_ms + SETTLE_MS + 1_000


def source_of(candles: Candles):
    """A CandleSource serving ``candles`` (open times in [start, end]); records every call."""
    calls: list[tuple[int, int]] = []

    def source(exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> Candles:
        calls.append((start_ms, end_ms))
        keep = (candles.time >= start_ms) & (candles.time <= end_ms)
        idx = keep.nonzero()[0]
        if len(idx) == 0:
            return candles.slice(0, 0)
        return candles.slice(int(idx[0]), int(idx[-1]) + 1)

    source.calls = calls  # type: ignore[attr-defined]
    return source


def at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


class DiesAfterPlacing:
    """A gateway whose worker is killed right after the exchange accepted the order."""

    def __init__(self, inner):
        self.inner = inner

    def place(self, intent):
        self.inner.place(intent)
        raise SystemExit("worker killed")  # the Lambda died: nothing after this ran
