"""Fifty flows on one key share the key's request budget: against the loopback Binance's rate limit
(429, then 418 bans for whoever keeps sending), no order is refused and no candle is lost.

Each execution ticks on its own ccxt client, as each Lambda container has its own (one shared
client would serialise the requests by its lock); ten run at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from capandex import ratelimit
from capandex.db.schema import executions, notifications, tick_records, utcnow
from capandex.db.session import transaction
from capandex.errors import CapandexError
from capandex.exchanges import limits
from capandex.exchanges.client import ExchangeClient, new_instance
from capandex.exchanges.limits import KeyLimit
from capandex.live.budget import budgeted
from capandex.live.executions import execution_status, start_execution
from capandex.live.orders import LiveGateway
from capandex.live.scheduler import spread
from capandex.live.worker import process_tick
from tests.capandex.engine.factories import price_rule_flow, random_walk
from tests.capandex.live.helpers import add_key, make_flow, source_of
from tests.utils.binance_server import rate_limit
from tests.utils.fixtures import open_venue

N = 50
CANDLES = random_walk(60, seed=9)


class Fleet:
    """``size`` live executions of one user on one Binance key, buying when flat and selling when long."""

    def __init__(self, venue, budget: bool = True, size: int = N):
        self.venue, self.budget = venue, budget
        self.user = uuid.uuid4()
        with transaction() as conn:
            self.key_id = add_key(conn, self.user)
            self.executions = [start_execution(conn, user_id=self.user, mode="live", exchange_key_id=self.key_id,
                                               flow_id=make_flow(conn, self.user, price_rule_flow(0.0, 1e9)),
                                               now_ms=int(CANDLES.time[40]))["executionId"] for _ in range(size)]
        self.containers = threading.local()

    def gateway(self, row):
        client = getattr(self.containers, "client", None)
        if client is None:  # one client per worker thread: a container of its own
            client = ExchangeClient("binance", new_instance("binance", self.venue.credentials, False,
                                                            self.venue.server.url, 2000))
            client.ccxt.enableRateLimit = False
            self.containers.client = client
        if self.budget:
            client = budgeted(client, row.user_id, row.exchange_key_id)
        return LiveGateway(client, row.symbol, 0.001, lookup_pause=0.01)

    def tick(self, i):
        """Every execution's tick of candle ``i``, ten at a time; the transient failures' count."""
        def one(execution):
            try:
                process_tick(execution, int(CANDLES.time[i]), candles=source_of(CANDLES), gateway=self.gateway)
            except CapandexError:
                return 1
            return 0

        with ThreadPoolExecutor(max_workers=10) as pool:
            return sum(pool.map(one, self.executions))

    def processed(self, i):
        with transaction() as conn:
            return conn.execute(select(func.count()).select_from(tick_records).where(
                tick_records.c.execution_id.in_(self.executions), tick_records.c.candle_ms == int(CANDLES.time[i]),
                tick_records.c.status == "done")).scalar_one()


@pytest.fixture
def venue(configure, postgres_url, monkeypatch, entry_clock):
    configure(DATABASE_URL=postgres_url)
    entry_clock.at_settle(int(CANDLES.time[40]))  # every test ticks candle 40, right after it settled
    # a budget the loopback's limit (8 requests in any 0.2 s) holds with room for scheduling jitter:
    # one request every 50 ms, none at once (at most 5 in 0.2 s; ten workers starting together send 10)
    monkeypatch.setitem(limits.KEY_LIMITS, "binance", KeyLimit(1, 20.0))
    with open_venue("binance", configure, prices={"BTC/USDT": float(CANDLES.close[40])},
                    balances={"USDT": 50_000_000.0, "BTC": 0.0}) as opened:
        opened.server.request_limit, opened.server.ban_s = (8, 0.2), 0.5
        yield opened


def test_fifty_flows_on_one_key_stay_under_the_limit(venue):
    fleet = Fleet(venue)
    assert fleet.tick(40) == 0
    assert venue.server.limited == Counter()  # not one 429 or 418
    sides = Counter(venue.book.orders[c].side for c in venue.book.placed)
    assert sides == {"buy": N} and len(set(venue.book.placed)) == N  # no order refused or doubled
    assert fleet.processed(40) == N  # no candle lost
    with transaction() as conn:
        errors = conn.execute(select(func.count()).select_from(notifications).where(
            notifications.c.user_id == fleet.user, notifications.c.event == "engine_error")).scalar_one()
    assert errors == 0


def test_without_the_budget_the_same_fleet_is_refused_and_banned(venue):
    """The control: the loopback's limit is real — the same load without the key's budget meets
    429s, then 418 bans."""
    fleet = Fleet(venue, budget=False)
    failed = fleet.tick(40)
    assert venue.server.limited[429] >= 1 and venue.server.limited[418] >= 1
    assert failed >= 1 and fleet.processed(40) < N


def test_a_ban_empties_the_keys_budget_and_nothing_is_lost(venue, monkeypatch):
    """A 418 with Retry-After 30 s: the execution that met it backs off, and so does every other one on
    the key — without sending anything (a slot 30 s away is not waited for). After the ban, the next
    pass completes every tick, each order once."""
    fleet = Fleet(venue, size=10)
    venue.server.inject("/api/v3/order", rate_limit(retry_after=30, status=418))
    assert fleet.tick(40) == 10  # every tick failed transiently: the first on the ban, the rest on the budget
    # the banned request, and at most the few booked before the ban emptied the budget
    assert venue.server.count("/api/v3/order") <= 3 and venue.server.limited == Counter()
    with transaction() as conn:
        status = execution_status(conn, user_id=fleet.user, execution_id=fleet.executions[-1])
    assert status["errorCount"] == 1 and "rate limit" in status["lastError"].lower()
    later = utcnow() + dt.timedelta(seconds=31)
    monkeypatch.setattr(ratelimit, "utcnow", lambda: later)  # the ban is over
    from capandex.live import intents

    monkeypatch.setattr(intents, "now_ms", lambda: int(later.timestamp() * 1000))  # past the settle hold
    assert fleet.tick(40) == 0
    assert fleet.processed(40) == 10 and len(set(venue.book.placed)) == len(venue.book.placed) == 10
    with transaction() as conn:
        assert conn.execute(select(func.count()).select_from(executions).where(
            executions.c.id.in_(fleet.executions), executions.c.consecutive_failures == 0)).scalar_one() == 10


def test_ticks_due_together_on_one_key_are_spread_over_the_minute():
    live = [{"executionId": f"exec_{i}", "keyId": "key_a", "exchange": "binance"} for i in range(N)]
    paper = [{"executionId": "exec_p", "keyId": None, "exchange": "binance"}]
    delays = spread(live + paper, lambda exchange: KeyLimit(20, 8.0))
    assert delays[:5] == [0] * 5  # the burst (20 requests: 5 ticks of 4) starts at once
    assert delays[5:8] == [1, 1, 2] and delays[N - 1] == 23  # then one every 0.5 s
    assert delays[-1] == 0 and max(delays) <= 45
    assert spread([*live[:3], {**live[0], "keyId": "key_b"}], lambda exchange: KeyLimit(20, 8.0)) == [0] * 4
