"""Protective stops resting on the exchange (Binance, OKX, Bybit through the real ccxt client):
placed after the entry, moved as the trailing level rises, cancelled before any other exit, and a
stop that fired is the position's exit at its real fill price and fee."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from capandex.db.schema import executions, orders, positions
from capandex.db.session import transaction
from capandex.engine import Candles
from capandex.errors import UpstreamUnavailable
from capandex.live import intents
from capandex.live.client_ids import client_order_id
from capandex.live.executions import start_execution
from capandex.live.orders import LiveGateway
from capandex.live.worker import process_tick
from tests.capandex.engine.factories import HOUR_MS, price_rule_flow
from tests.capandex.live.helpers import EntryClock, add_key, make_flow, source_of
from tests.utils.fixtures import VENUES, open_venue

N = 6
#: hourly candles ending with the current hour's (so the exchange's fill times fall in the last one):
#: flat at 100; candle 3 rises to 105; candle 4 dips to 96 (below a 2 % stop); candle 5 stays above 98
ROWS = [(100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100), (100, 105, 99.8, 104),
        (100, 100.4, 96.0, 99.0), (100, 100.4, 98.5, 100)]


def _candles() -> Candles:
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*ROWS, strict=True))
    now_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    times = now_hour - (N - 1) * HOUR_MS + np.arange(N, dtype=np.int64) * HOUR_MS
    return Candles.from_arrays(times, o, h, lo, c, np.ones(N))


CANDLES = _candles()


@pytest.fixture(autouse=True)
def _in_the_current_hour() -> None:
    """The loopback exchanges date fills by the wall clock, so the candles must end with the hour each
    test runs in: made again as it starts, after waiting out an hour about to turn (a suite collected
    at 19:59 ran these tests at 20:02, and every fill fell after the last candle)."""
    global CANDLES
    left_ms = HOUR_MS - int(time.time() * 1000) % HOUR_MS
    if left_ms < 20_000:
        time.sleep(left_ms / 1000 + 0.1)
    CANDLES = _candles()


class Live:
    """One live execution of ``flow`` on a loopback venue, ticked candle by candle at the close."""

    def __init__(self, venue, flow):
        self.venue, self.book = venue, venue.book
        self.user = uuid.uuid4()
        with transaction() as conn:
            key_id = add_key(conn, self.user, venue.id)
            flow_id = make_flow(conn, self.user, flow, exchange=venue.id)
            self.execution = start_execution(conn, user_id=self.user, flow_id=flow_id, mode="live",
                                             exchange_key_id=key_id, now_ms=int(CANDLES.time[2]))["executionId"]
        client = venue.client()
        self.gateway = lambda row: LiveGateway(client, row.symbol, 0.001, lookup_pause=0.01)

    #: the entry clock (:class:`tests.capandex.live.helpers.EntryClock`), set per test
    clock: EntryClock

    def tick(self, i, gateway=None, price=None):
        """Tick candle ``i`` right after it settled, with the market at ``price`` (default: its close)."""
        self.clock.at_settle(int(CANDLES.time[i]))
        self.book.move_price("BTC/USDT", float(CANDLES.close[i]) if price is None else price)
        return process_tick(self.execution, int(CANDLES.time[i]), candles=source_of(CANDLES),
                            gateway=gateway or self.gateway)

    def stop_id(self, i):
        return client_order_id(self.execution, int(CANDLES.time[i]), "stop")

    def state(self):
        with transaction() as conn:
            return conn.execute(select(executions.c.state).where(executions.c.id == self.execution)).scalar_one()

    def positions(self):
        with transaction() as conn:
            return conn.execute(select(positions).where(positions.c.execution_id == self.execution)
                                .order_by(positions.c.entry_time)).all()

    def orders(self):
        with transaction() as conn:
            return conn.execute(select(orders.c.client_order_id, orders.c.kind, orders.c.status)
                                .where(orders.c.execution_id == self.execution).order_by(orders.c.created_at)).all()

    def sides(self):
        return [(self.book.orders[c].kind, self.book.orders[c].side) for c in self.book.placed]


@pytest.fixture(autouse=True)
def _ticks_at_settle(monkeypatch, entry_clock):
    monkeypatch.setattr(Live, "clock", entry_clock, raising=False)


def _venue(request, configure, postgres_url, **book):
    configure(DATABASE_URL=postgres_url)
    return open_venue(request.param, configure, prices={"BTC/USDT": 100.0},
                      balances={"USDT": 1_000_000.0, "BTC": 0.0}, **book)


@pytest.fixture(params=VENUES)
def venue(request, configure, postgres_url):
    with _venue(request, configure, postgres_url) as opened:
        yield opened


def test_the_stop_rests_on_the_exchange_right_after_the_entry(venue):
    live = Live(venue, price_rule_flow(0.0, None, ("stop_loss", 2.0)))
    assert live.tick(2).status == "done"
    buy = live.book.orders[live.book.placed[0]]
    stop = live.book.orders[live.stop_id(2)]
    assert live.sides() == [("market", "buy"), ("stop", "sell")]
    assert stop.status == "open" and stop.trigger == pytest.approx(buy.price * 0.98, rel=1e-4)
    assert stop.requested == pytest.approx(buy.filled - (buy.fee if buy.fee_asset == "BTC" else 0.0), rel=1e-3)
    assert live.state()["stop"]["client_order_id"] == live.stop_id(2)
    assert [tuple(r)[1:] for r in live.orders()] == [("market", "filled"), ("stop", "open")]


def test_a_stop_filled_on_the_exchange_closes_the_position_with_its_real_fill(venue):
    live = Live(venue, price_rule_flow(0.0, None, ("stop_loss", 2.0)))
    live.tick(2)
    live.tick(3)  # risen, no trailing stop: nothing to move
    assert live.sides() == [("market", "buy"), ("stop", "sell")]
    live.book.move_price("BTC/USDT", 97.5)  # the dip of candle 4 reaches the stop on the exchange
    stop = live.book.orders[live.stop_id(2)]
    assert stop.status == "filled" and stop.price == 97.5
    assert live.tick(4).status == "done"  # candle 4's range crossed the level: the exit finds the fill
    closed, reopened = live.positions()
    assert (closed.status, closed.exit_reason) == ("closed", "stop_loss")
    assert closed.exit_price == pytest.approx(97.5) and "resting on the exchange" in closed.note
    assert closed.fees == pytest.approx(live.book.orders[live.book.placed[0]].cost * 0.001 + stop.fee, rel=1e-3)
    assert reopened.status == "open"  # flat again at the close: the flow buys, and protects it again
    assert live.sides() == [("market", "buy"), ("stop", "sell"), ("market", "buy"), ("stop", "sell")]
    assert ("market", "sell") not in live.sides()  # the stop sold it: no market sell after it


def test_a_fill_the_candles_do_not_show_is_recorded_on_the_next_tick(venue):
    """The exchange triggered the stop on a trade the candles do not show: the next tick asks the
    exchange about its stop first and records the fill before it steps the candle."""
    live = Live(venue, price_rule_flow(0.0, None, ("stop_loss", 2.0)))
    live.tick(2), live.tick(3), live.tick(4)  # the second entry is protected by the stop of candle 4
    second = live.stop_id(4)
    live.book.move_price("BTC/USDT", live.book.orders[second].trigger - 0.01)
    assert live.book.orders[second].status == "filled"
    assert live.tick(5).status == "done"  # candle 5's low (98.5) stays above the level
    exits = [p for p in live.positions() if p.status == "closed"]
    assert [p.exit_reason for p in exits] == ["stop_loss", "stop_loss"]
    assert exits[1].exit_price == pytest.approx(live.book.orders[second].price)


def test_a_trailing_stop_moves_up_with_a_new_id(venue):
    live = Live(venue, price_rule_flow(0.0, None, ("trailing_stop", 2.0)))
    live.tick(2)
    assert live.tick(3).status == "done"  # candle 3's high 105: trailing level 105 × 0.98
    old, new = live.book.orders[live.stop_id(2)], live.book.orders[live.stop_id(3)]
    assert old.status == "canceled" and new.status == "open"
    assert new.trigger == pytest.approx(105 * 0.98, rel=1e-4)
    assert live.state()["stop"] == {"client_order_id": live.stop_id(3), "level": pytest.approx(new.trigger),
                                    "amount": pytest.approx(new.requested), "reason": "trailing_stop"}
    assert live.book.locked_of("BTC") == pytest.approx(new.requested if live.book.lock_stops else 0.0)


def test_a_stop_that_fills_while_it_is_being_moved_is_the_exit(venue):
    """The race: the old stop fires between the tick's decision and its cancel. The cancel finds it
    filled: the position closes at that fill, and neither the new stop nor a sell is placed."""
    live = Live(venue, price_rule_flow(0.0, None, ("trailing_stop", 2.0)))
    live.tick(2)
    live.book.fail_next("fill_before_cancel")
    assert live.tick(3).status == "done"
    old = live.book.orders[live.stop_id(2)]
    assert old.status == "filled" and live.stop_id(3) not in live.book.orders
    (trade,) = [p for p in live.positions() if p.status == "closed"]
    assert (trade.exit_reason, trade.exit_price) == ("trailing_stop", pytest.approx(old.price))
    assert "stop" not in live.state() and live.state()["broker"]["units"] == 0.0
    assert ("market", "sell") not in live.sides()


def test_an_exit_for_another_reason_cancels_the_stop_first(venue):
    live = Live(venue, price_rule_flow(0.0, 1e9, ("stop_loss", 2.0)))  # buys, then sells on the next close
    live.tick(2)
    assert live.tick(3).status == "done"
    assert live.book.orders[live.stop_id(2)].status == "canceled"
    assert live.sides() == [("market", "buy"), ("stop", "sell"), ("market", "sell")]
    (trade,) = live.positions()
    assert trade.exit_reason == "signal" and live.book.locked_of("BTC") == 0.0
    assert "stop" not in live.state()


@pytest.mark.parametrize("fault", ["rate_limited", "server_error"])
def test_a_refused_stop_placement_is_resumed_without_a_second_buy(venue, monkeypatch, fault):
    """The stop's placement fails after the buy filled: the pass gives up, and the next one finds
    the buy by its id and places the stop — one buy, one stop."""
    live = Live(venue, price_rule_flow(0.0, None, ("stop_loss", 2.0)))

    class FailsTheStop:
        def __init__(self, row):
            self.inner = live.gateway(row)

        def place(self, intent):
            if intent.kind == "stop":
                live.book.fail_next(fault)
            return self.inner.place(intent)

    with pytest.raises(UpstreamUnavailable):
        live.tick(2, gateway=FailsTheStop)
    assert live.sides() == [("market", "buy")]
    monkeypatch.setattr(intents, "now_ms", lambda: int(time.time() * 1000) + 61_000)  # the next minute's pass
    assert live.tick(2).status == "done"
    assert live.sides() == [("market", "buy"), ("stop", "sell")]


def test_a_stop_the_user_cancelled_on_the_exchange_is_placed_again(venue):
    live = Live(venue, price_rule_flow(0.0, None, ("stop_loss", 2.0)))
    live.tick(2)
    assert live.book.cancel(live.stop_id(2)) is not None  # by hand, on the exchange's site
    assert live.tick(3).status == "done"
    assert live.book.orders[live.stop_id(3)].status == "open"
    assert live.state()["stop"]["client_order_id"] == live.stop_id(3)
    (position,) = live.positions()
    assert position.status == "open"


@pytest.fixture(params=[(), ("STOP_LOSS",)], ids=["stop_limit", "market_stop"])
def binance(request, configure, postgres_url):
    """The loopback Binance whose symbols offer the stop-limit only (the default), or also STOP_LOSS."""
    with open_venue("binance", configure, prices={"BTC/USDT": 100.0}, balances={"USDT": 1_000_000.0}) as opened:
        configure(DATABASE_URL=postgres_url)
        opened.server.order_types = (*opened.server.order_types, *request.param)
        yield opened


def test_binance_places_a_market_stop_where_the_symbol_offers_one_else_a_stop_limit(binance):
    live = Live(binance, price_rule_flow(0.0, None, ("stop_loss", 2.0)))
    live.tick(2)
    stop = live.book.orders[live.stop_id(2)]
    market = "STOP_LOSS" in binance.server.order_types
    assert stop.limit == (None if market else pytest.approx(stop.trigger * 0.99, rel=1e-4))
    live.book.move_price("BTC/USDT", stop.trigger * 0.98)  # a gap past the limit
    assert stop.status == ("filled" if market else "open")  # a stop-limit triggered but waits at its limit
    assert live.tick(4, price=stop.trigger * 0.98).status == "done"  # candle 4 crossed the level
    trade = live.positions()[0]
    assert (trade.exit_reason, trade.exit_price) == ("stop_loss", pytest.approx(stop.trigger * 0.98))
    assert stop.status == ("filled" if market else "canceled")  # the waiting stop-limit gave way to a market sell
    assert (("market", "sell") in live.sides()) is not market
    # and the trade says why a stop order resting on the exchange did not sell it
    note = trade.note or ""
    assert ("had not filled" in note and "gapped past its limit" in note) is not market


def test_webhook_calls_protect_and_unprotect_the_position(binance):
    from capandex.live import webhooks

    flow = price_rule_flow(1e12, 0.0, ("stop_loss", 2.0))  # the candles never trade: only the webhook does
    flow["nodes"].append({"id": "hook", "type": "trigger", "data": {"kind": "webhook"}})
    live = Live(binance, flow)
    with transaction() as conn:
        flow_id = conn.execute(select(executions.c.flow_id).where(executions.c.id == live.execution)).scalar_one()
        token = webhooks.rotate_token(conn, user_id=live.user, flow_id=flow_id)["token"]

    def fire(action):
        return webhooks.fire(flow_id=flow_id, token=token, body=f'{{"action": "{action}", "id": "{action}"}}'.encode(),
                             price=lambda exchange, symbol: 100.0, gateway=live.gateway)

    assert len(fire("buy")["orders"]) == 2
    assert live.sides() == [("market", "buy"), ("stop", "sell")]
    stop_id = live.state()["stop"]["client_order_id"]
    assert live.book.orders[stop_id].status == "open"
    fire("sell")
    assert live.book.orders[stop_id].status == "canceled"
    assert live.sides()[-1] == ("market", "sell") and "stop" not in live.state()


def test_stops_on_exchange_can_be_turned_off_and_are_refused_where_unsupported(configure, postgres_url, monkeypatch):
    from capandex.errors import ValidationFailed
    from capandex.exchanges import stops

    configure(DATABASE_URL=postgres_url)
    user = uuid.uuid4()
    with transaction() as conn:
        key_id = add_key(conn, user, "okx")

        def start(setting):
            flow = price_rule_flow(0.0, None, ("stop_loss", 2.0))
            flow["settings"] = {} if setting is None else {"stopsOnExchange": setting}
            flow_id = make_flow(conn, user, flow, exchange="okx")
            return start_execution(conn, user_id=user, flow_id=flow_id, mode="live", exchange_key_id=key_id)

        def kept(started):
            return conn.execute(select(executions.c.state).where(executions.c.id == started["executionId"])
                                ).scalar_one()["stopsOnExchange"]

        assert kept(start(None)) is True and kept(start(False)) is False
        with pytest.raises(ValidationFailed) as typed:
            start("yes")
        assert typed.value.details[0]["field"] == "settings.stopsOnExchange"
        monkeypatch.delitem(stops.STOP_ORDERS, "okx")
        assert kept(start(None)) is False  # unsupported: protected on each tick only
        with pytest.raises(ValidationFailed) as refused:
            start(True)
        assert refused.value.details[0]["field"] == "settings.stopsOnExchange"


def test_a_refused_stop_is_told_once_and_not_sent_again_every_candle(configure, postgres_url):
    """The symbol takes no stop orders: the stop after the entry is refused (here by ccxt, which
    reads the symbol's order types; elsewhere by the exchange). The user is told once, not at every
    candle; the same level is tried again an hour later at the earliest (these candles are an hour
    apart), and the tick still checks it: candle 4's dip sells."""
    from capandex.db.schema import notifications

    with open_venue("binance", configure, prices={"BTC/USDT": 100.0}, balances={"USDT": 1_000_000.0}) as venue:
        configure(DATABASE_URL=postgres_url)
        venue.server.order_types = ("LIMIT", "MARKET")  # neither STOP_LOSS nor STOP_LOSS_LIMIT
        live = Live(venue, price_rule_flow(0.0, None, ("stop_loss", 2.0)))
        live.tick(2)
        live.tick(3)
        attempts = [r for r in live.orders() if r.kind == "stop"]
        assert [r.status for r in attempts] == ["rejected"] * 2  # candles 2 and 3, an hour apart
        assert live.state()["stopRefused"]["level"] == pytest.approx(live.positions()[0].entry_price * 0.98)
        with transaction() as conn:
            told = conn.execute(select(notifications.c.message).where(
                notifications.c.user_id == live.user, notifications.c.title.like("%stop order refused"))).all()
        assert len(told) == 1 and "checked on each tick" in told[0].message
        live.tick(4)  # the dip below the level: sold at market by the tick (then bought again)
        trade, again = live.positions()
        assert (trade.status, trade.exit_reason, again.status) == ("closed", "stop_loss", "open")
        assert live.state()["stopRefused"]["level"] == pytest.approx(again.entry_price * 0.98)
        with transaction() as conn:
            assert len(conn.execute(select(notifications.c.id).where(
                notifications.c.user_id == live.user, notifications.c.title.like("%stop order refused"))).all()) == 1


def test_a_refused_level_is_not_sent_again_before_it_rises_or_an_hour_passes():
    from capandex.engine import compile_flow
    from capandex.live import protective

    risk = compile_flow(price_rule_flow(0.0, None, ("trailing_stop", 2.0))).flow.risk
    refused_at = (98.0, 0)  # the trailing level at a high of 100, refused at t = 0

    def again(high, minutes):
        return protective.moved("exec", minutes * 60_000, None, risk, 100.0, high, 1.0, refusal=refused_at,
                                at_ms=minutes * 60_000)

    assert again(100.0, 1) == [] and again(100.05, 59) == []  # 1m candles: not every minute
    assert [o.trigger for o in again(101.0, 2)] == [pytest.approx(98.98)]  # the level rose: a new order
    assert len(again(100.0, 60)) == 1  # an hour later: tried again
