"""Issue 12's scenario, shared by the live tests: a 1m SMA 2/3 cross with a 2 % stop-loss, live on
the loopback Binance (the real ccxt client places the orders), with a hand-moved lease clock."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from capandex.db.session import transaction
from capandex.engine import Candles
from capandex.live import catchup, entries, intents
from capandex.live.executions import start_execution
from capandex.live.orders import LiveGateway
from capandex.live.worker import process_tick
from tests.capandex.engine.factories import START_MS, sma_cross_flow
from tests.capandex.live.helpers import add_key, make_flow, source_of
from tests.utils.fixtures import open_venue

MINUTE_MS = 60_000
#: closes: falling, a cross up at A (index 5), B dips 4 % below A's close, a cross down at C, a
#: cross up again at E (index 9)
CLOSES = [100.0, 99.0, 98.0, 97.0, 96.0, 99.0, 98.0, 94.0, 93.0, 99.0, 99.5]
A, B, E = 5, 6, 9


def _candles() -> Candles:
    close = np.array(CLOSES)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    low[B] = CLOSES[A] * 0.96  # the dip inside candle B
    return Candles.from_arrays(START_MS + np.arange(len(close), dtype=np.int64) * MINUTE_MS, open_, high, low, close,
                               np.ones(len(close)))


CANDLES = _candles()


class Clock:
    """The live engine's clock (the lease's, ``intents.now_ms``, the catch-up's, ``catchup.now_ms``,
    and the entries', ``entries.now_ms``), moved by hand: each pass is a minute after the last."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = int(CANDLES.time[A]) + 2 * MINUTE_MS
        for module in (intents, catchup, entries):
            monkeypatch.setattr(module, "now_ms", lambda: self.now)

    def advance(self, ms: int) -> None:
        self.now += ms


def open_scenario(configure, postgres_url):
    """Start the scenario's live execution (started at candle A) on the loopback Binance; yields
    ``(venue, user, execution id, gateway factory)``."""
    configure(DATABASE_URL=postgres_url)
    with open_venue("binance", configure) as venue:
        user = uuid.uuid4()
        with transaction() as conn:
            key_id = add_key(conn, user)
            flow = sma_cross_flow(2, 3, ("stop_loss", 2.0))
            # the stop is checked on each tick only: these tests are about the tick (test_exchange_stops
            # covers the stop resting on the exchange)
            flow["settings"] = {"stopsOnExchange": False}
            flow_id = make_flow(conn, user, flow, timeframe="1m")
            execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="live", exchange_key_id=key_id,
                                        now_ms=int(CANDLES.time[A]))["executionId"]
        client = venue.client()
        yield venue, user, execution, (lambda row: LiveGateway(client, row.symbol, 0.001, lookup_pause=0.01))


def tick(execution, i, gateway, book, **kw):
    book.prices["BTC/USDT"] = CANDLES.close[i]  # the market trades at the last close when the pass runs
    return process_tick(execution, int(CANDLES.time[i]), candles=source_of(CANDLES), gateway=kw.get("via", gateway))
