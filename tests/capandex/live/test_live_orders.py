"""Live mode against each loopback exchange (Binance, OKX, Bybit): one order per (execution,
candle, action), whatever fails.

The real ccxt client places the orders; faults are injected on the exchange's order endpoint.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import insert, select

from capandex import telemetry
from capandex.db.schema import exchange_keys, executions, new_id, notifications, orders, positions, utcnow
from capandex.db.session import transaction
from capandex.errors import UpstreamUnavailable
from capandex.live import intents
from capandex.live.client_ids import client_order_id
from capandex.live.executions import execution_status, start_execution
from capandex.live.orders import LiveGateway, OrderIntent
from capandex.live.scheduler import due_ticks
from capandex.live.worker import process_tick
from tests.capandex.engine.factories import HOUR_MS, price_rule_flow, random_walk
from tests.capandex.live.helpers import DiesAfterPlacing, make_flow, source_of
from tests.utils.fixtures import VENUES, open_venue

CANDLES = random_walk(80, seed=5)


@pytest.fixture(params=VENUES)
def live(request, configure, postgres_url, entry_clock):
    configure(DATABASE_URL=postgres_url)
    with open_venue(request.param, configure, prices={"BTC/USDT": float(CANDLES.close[40])},
                    late_seconds=1.3) as venue:
        yield _harness(venue, entry_clock)


def _harness(venue, clock):
    user = uuid.uuid4()
    with transaction() as conn:
        key_id = new_id("key")
        conn.execute(insert(exchange_keys).values(id=key_id, user_id=user, exchange=venue.id, label="test",
                                                  api_key_hint="k…", sealed={}, is_valid=True, created_at=utcnow()))
        # buys when flat (close > 0), sells when long (close < 1e9): one order every tick
        flow_id = make_flow(conn, user, price_rule_flow(0.0, 1e9), exchange=venue.id)
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="live", exchange_key_id=key_id,
                                    now_ms=int(CANDLES.time[40]))["executionId"]
    client = venue.client()

    class Harness:
        pass

    h = Harness()
    h.venue, h.book, h.user, h.execution, h.source, h.key_id = venue, venue.book, user, execution, source_of(CANDLES), \
        key_id
    h.gateway = lambda row: LiveGateway(client, row.symbol, 0.001, lookup_pause=0.01)
    def tick(i, **kw):
        clock.at_settle(int(CANDLES.time[i]))
        return process_tick(execution, int(CANDLES.time[i]), candles=h.source, gateway=kw.get("gateway", h.gateway))

    h.tick, h.clock = tick, clock
    return h


@pytest.fixture
def later(monkeypatch):
    """Move the worker's clock past the order lease, as SQS's redelivery (after the 360 s
    visibility timeout) comes after the dead worker's lease (90 s) has expired."""
    now = intents.now_ms

    def advance(ms: int = 91_000) -> None:
        monkeypatch.setattr(intents, "now_ms", lambda: now() + ms)

    return advance




def _orders(execution):
    with transaction() as conn:
        return conn.execute(select(orders).where(orders.c.execution_id == execution)
                            .order_by(orders.c.candle_ms)).all()


def _errors(user):
    with transaction() as conn:
        return conn.execute(select(notifications.c.message).where(notifications.c.user_id == user,
                                                                  notifications.c.event == "engine_error")).all()


def _execution(execution):
    with transaction() as conn:
        return conn.execute(select(executions).where(executions.c.id == execution)).one()


def _positions(execution):
    with transaction() as conn:
        return conn.execute(select(positions).where(positions.c.execution_id == execution)
                            .order_by(positions.c.status, positions.c.exit_reason)).all()


def test_buy_then_sell_with_deterministic_client_ids(live):
    assert live.tick(40).status == "done"
    assert live.tick(41).status == "done"
    buy_id = client_order_id(live.execution, int(CANDLES.time[40]), "buy")
    sell_id = client_order_id(live.execution, int(CANDLES.time[41]), "sell")
    assert live.book.placed == [buy_id, sell_id]
    assert len(buy_id) <= 36 and buy_id.isalnum()
    rows = _orders(live.execution)
    assert [(r.client_order_id, r.status) for r in rows] == [(buy_id, "filled"), (sell_id, "filled")]
    with transaction() as conn:
        position = conn.execute(select(positions).where(positions.c.execution_id == live.execution)).one()
        status = execution_status(conn, user_id=live.user, execution_id=live.execution)
    exchange_buy = live.book.orders[buy_id]
    assert position.status == "closed"
    assert position.units == pytest.approx(exchange_buy.filled)  # the real fill, not the sim
    assert position.entry_price == pytest.approx(live.book.prices["BTC/USDT"])
    assert status["totalTrades"] == 1 and status["openPositions"] == 0 and status["currentTick"] == 2


def test_duplicated_delivery_places_one_order(live):
    assert live.tick(40).status == "done"
    assert live.tick(40).status == "duplicate"
    assert len(live.book.placed) == 1


def test_timeout_after_the_exchange_accepted_finds_the_order(live):
    live.book.fail_next("accept_then_timeout")
    assert live.tick(40).status == "done"
    assert len(live.book.placed) == 1
    assert [r.status for r in _orders(live.execution)] == ["filled"]


def test_worker_dies_between_order_and_database_write(live, later):
    with pytest.raises(SystemExit):
        live.tick(40, gateway=lambda row: DiesAfterPlacing(live.gateway(row)))
    assert [r.status for r in _orders(live.execution)] == ["pending"]
    assert live.tick(40).status == "in_progress"  # a copy within the lease: hands off
    later()
    outcome = live.tick(40)  # SQS redelivers the message
    assert outcome.status == "done" and outcome.fills == 1
    assert len(live.book.placed) == 1
    assert [r.status for r in _orders(live.execution)] == ["filled"]


@pytest.mark.parametrize("fault", ["server_error", "rate_limited", "ip_banned"])
def test_a_refused_placement_is_retried_with_the_same_id_and_counted(live, later, fault):
    live.book.fail_next(fault)
    with pytest.raises(UpstreamUnavailable):
        live.tick(40)
    assert live.book.placed == []
    assert len(_errors(live.user)) == 1
    intent = _execution(live.execution).state["pending_tick"]
    assert intent["state"] == "intended" and intent["lease"]["owner"] == "released"  # given back
    assert live.tick(40).status == "in_progress"  # held only while an accepted order would surface
    later(6_000)  # past the settle hold (5 s), far inside the 90 s lease
    assert live.tick(40).status == "done"  # the next delivery places it, once
    assert live.book.placed == [client_order_id(live.execution, int(CANDLES.time[40]), "buy")]
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == live.execution)).one()
    assert row.consecutive_failures == 0 and row.error_count == 1 and row.status == "running"


@pytest.mark.parametrize(("fault", "reason"), [("insufficient_balance", "insufficient_balance"),
                                                ("delisted", "delisted")])
def test_rejections_end_in_error_after_three_failures(live, fault, reason):
    live.book.fail_next(fault, times=3)
    for i in (40, 41):
        outcome = live.tick(i)
        assert (outcome.status, outcome.error) == ("failed", reason)
    with transaction() as conn:
        assert execution_status(conn, user_id=live.user, execution_id=live.execution)["status"] == "running"
    live.tick(42)
    with transaction() as conn:
        status = execution_status(conn, user_id=live.user, execution_id=live.execution)
    assert status["status"] == "error" and status["errorCount"] == 3 and status["openPositions"] == 0
    assert live.book.placed == []
    assert [r.status for r in _orders(live.execution)] == ["rejected"] * 3
    assert len(_errors(live.user)) == 3
    assert live.tick(43).status == "skipped"  # an execution in error does not trade


def test_orders_placed_and_failed_are_counted_for_operators(live):
    live.book.fail_next("insufficient_balance", times=1)
    with telemetry.recording("ticks-worker") as counts:
        assert live.tick(40).status == "failed"
        assert live.tick(41).status == "done"
    assert counts[(telemetry.Metric.ORDERS_FAILED, ())] == 1 and counts[(telemetry.Metric.ORDERS_PLACED, ())] == 1


def test_success_resets_the_failure_count(live):
    live.book.fail_next("insufficient_balance", times=2)
    live.tick(40), live.tick(41)
    assert live.tick(42).status == "done"
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == live.execution)).one()
    assert (row.consecutive_failures, row.error_count, row.status) == (0, 2, "running")
    assert HOUR_MS  # candles are hourly


def test_two_workers_on_one_intent_place_one_order(live):
    """Binance accepts a filled order's client id again, so lookup-first alone would let a second
    worker that looks up while the first one's request is in flight place a second order."""
    entered, release, results = threading.Event(), threading.Event(), []

    class Slow:
        def __init__(self, row):
            self.inner = live.gateway(row)

        def place(self, intent):
            entered.set()
            release.wait(10)
            return self.inner.place(intent)

    first = threading.Thread(target=lambda: results.append(live.tick(40, gateway=Slow)))
    first.start()
    assert entered.wait(10)
    assert live.tick(40).status == "in_progress"  # the duplicate delivery, while the first places
    release.set()
    first.join(10)
    assert results[0].status == "done" and len(live.book.placed) == 1
    assert [r.status for r in _orders(live.execution)] == ["filled"]


def test_a_pending_intent_is_completed_after_a_stop(live, later):
    with pytest.raises(SystemExit):
        live.tick(40, gateway=lambda row: DiesAfterPlacing(live.gateway(row)))
    with transaction() as conn:
        from capandex.live.executions import stop_execution

        assert stop_execution(conn, user_id=live.user, execution_id=live.execution)["status"] == "stopped"
        due = due_ticks(conn, int(CANDLES.time[42]))
    assert [m["executionId"] for m in due].count(live.execution) == 1  # the scheduler still sends it
    later()
    outcome = live.tick(41)
    assert (outcome.status, outcome.fills) == ("done", 1)
    assert len(live.book.placed) == 1 and [r.status for r in _orders(live.execution)] == ["filled"]
    with transaction() as conn:
        status = execution_status(conn, user_id=live.user, execution_id=live.execution)
        assert not [m for m in due_ticks(conn, int(CANDLES.time[43])) if m["executionId"] == live.execution]
    assert status["openPositions"] == 1 and status["status"] == "stopped" and status["currentTick"] == 1
    assert live.tick(42).status == "skipped"  # nothing new is traded after the stop


def test_partial_sell_keeps_the_rest_open(live):
    assert live.tick(40).status == "done"
    live.book.fail_next("partial_fill")
    assert live.tick(41).status == "done"
    with transaction() as conn:
        rows = conn.execute(select(positions).where(positions.c.execution_id == live.execution)
                            .order_by(positions.c.status)).all()
        order_states = [r.status for r in _orders(live.execution)]
    bought = live.book.orders[client_order_id(live.execution, int(CANDLES.time[40]), "buy")].filled
    closed, still_open = rows
    assert (closed.status, still_open.status) == ("closed", "open")
    assert closed.units + still_open.units == pytest.approx(bought)
    assert still_open.units == pytest.approx(bought / 2, rel=1e-3)
    assert order_states == ["filled", "partially_filled"]
    assert live.tick(42).status == "done"  # the next sell sells the rest
    sell = live.book.orders[client_order_id(live.execution, int(CANDLES.time[42]), "sell")]
    assert sell.filled == pytest.approx(still_open.units)


def test_an_unlisted_symbol_is_rejected_before_the_lookup(live):
    """ccxt cannot even look an order up on a market it does not list: the intent must end
    ``failed`` (and the message be consumed), not stay pending for every later tick to retry."""
    with transaction() as conn:
        flow_id = make_flow(conn, live.user, price_rule_flow(0.0, 1e9), symbol="NOPE/USDT", exchange=live.venue.id)
        execution = start_execution(conn, user_id=live.user, flow_id=flow_id, mode="live",
                                    exchange_key_id=live.key_id, now_ms=int(CANDLES.time[40]))["executionId"]
    live.clock.at_settle(int(CANDLES.time[40]))
    outcome = process_tick(execution, int(CANDLES.time[40]), candles=live.source, gateway=live.gateway)
    assert (outcome.status, outcome.error) == ("failed", "delisted")
    row = _execution(execution)
    assert "pending_tick" not in row.state and row.consecutive_failures == 1
    assert [r.status for r in _orders(execution)] == ["rejected"] and live.book.placed == []


def _bought(live):
    return live.book.orders[client_order_id(live.execution, int(CANDLES.time[40]), "buy")].filled


def test_a_position_sold_by_hand_is_closed_as_reconciled(live):
    assert live.tick(40).status == "done"
    live.book.balances["BTC"] = 0.0  # the user sold everything on the exchange's own site
    outcome = live.tick(41)
    assert (outcome.status, outcome.fills) == ("done", 1)
    assert len(live.book.placed) == 1  # no sell was attempted
    (position,) = _positions(live.execution)
    assert (position.status, position.exit_reason) == ("closed", "reconciled")
    assert position.units == pytest.approx(_bought(live))
    assert position.exit_price == pytest.approx(float(CANDLES.close[41]))  # the last close
    assert [r.status for r in _orders(live.execution)] == ["filled", "not_held"]
    row = _execution(live.execution)
    assert (row.status, row.consecutive_failures, row.error_count) == ("running", 0, 0)
    assert row.state["broker"]["units"] == 0.0
    (message,) = _errors(live.user)
    assert "no longer held" in message.message and "reconciled" in message.message
    assert live.tick(42).status == "done"  # flat again: the flow buys
    assert len(live.book.placed) == 2 and live.book.orders[live.book.placed[1]].side == "buy"


def test_a_position_partly_sold_by_hand_sells_the_rest(live):
    assert live.tick(40).status == "done"
    bought = _bought(live)
    live.book.balances["BTC"] = round(bought * 0.4, 5)
    assert live.tick(41).status == "done"
    sell = live.book.orders[client_order_id(live.execution, int(CANDLES.time[41]), "sell")]
    assert sell.filled == pytest.approx(bought * 0.4, abs=1e-5)
    reconciled, sold = _positions(live.execution)
    assert (reconciled.exit_reason, sold.exit_reason) == ("reconciled", "signal")
    assert reconciled.units + sold.units == pytest.approx(bought)
    assert sold.units == pytest.approx(sell.filled)
    entry_cost = bought * reconciled.entry_price  # each closed part carries its share of the entry
    assert sold.pnl == pytest.approx(sell.cost * 0.999 - entry_cost * 1.001
                                     * sold.units / bought, rel=1e-6)
    assert _execution(live.execution).state["broker"]["units"] == 0.0
    assert len(_errors(live.user)) == 1


def test_a_retry_reconciles_as_the_dead_worker_would_have(live, later):
    """The order's own quantity says how much was held, so the retry (whose lookup finds the
    sale, while the account is empty by now) splits the position the same way."""
    assert live.tick(40).status == "done"
    bought = _bought(live)
    live.book.balances["BTC"] = round(bought * 0.4, 5)
    with pytest.raises(SystemExit):
        live.tick(41, gateway=lambda row: DiesAfterPlacing(live.gateway(row)))
    later()
    assert live.tick(41).status == "done"
    assert len(live.book.placed) == 2
    reconciled, sold = _positions(live.execution)
    assert (reconciled.exit_reason, sold.exit_reason) == ("reconciled", "signal")
    assert reconciled.units == pytest.approx(bought - live.book.orders[live.book.placed[1]].filled)


def test_a_fee_taken_in_the_base_asset_is_not_a_hand_sale(live):
    assert live.tick(40).status == "done"
    bought = _bought(live)
    live.book.balances["BTC"] = bought * (1 - 0.001)  # what is left when the exchange charges the fee in BTC
    assert live.tick(41).status == "done"
    (position,) = _positions(live.execution)
    assert (position.status, position.exit_reason) == ("closed", "signal")
    assert _errors(live.user) == []


def test_a_duplicate_answer_is_resolved_by_looking_the_id_up(live):
    """The lookup does not see an order placed a moment ago (by a worker that died), so the gateway
    places it again: the exchange refuses the reused id, and the gateway finds the first order."""
    live.book.reuse_filled_ids = False
    candle = int(CANDLES.time[40])
    intent = OrderIntent(client_order_id(live.execution, candle, "buy"), "buy", 0.01, 40_000.0, "signal", "buy")
    first = live.venue.client().create_market_order("BTC/USDT", "buy", 0.01, intent.client_order_id)
    live.book.fail_next("lookup_miss")
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == live.execution)).one()
    fill = live.gateway(row).place(intent)
    assert (fill.exchange_order_id, fill.amount, fill.status) == (first.id, pytest.approx(0.01), "closed")
    assert live.book.placed == [intent.client_order_id]


@pytest.mark.parametrize("exchange", VENUES)
def test_a_buy_fee_charged_in_the_base_asset_is_valued_in_quote(exchange, configure):
    """OKX and Bybit charge a spot buy's fee in the coin bought; the fill reports it in quote."""
    with open_venue(exchange, configure, fee_in_base=True) as venue:
        intent = OrderIntent("cx" + "7" * 30, "buy", 0.02, 40_000.0, "signal", "buy")
        fill = LiveGateway(venue.client(), "BTC/USDT", 0.005, lookup_pause=0.01).place(intent)
        placed = venue.book.orders[intent.client_order_id]
    assert placed.fee_asset == "BTC"
    assert fill.fee == pytest.approx(placed.fee * placed.price)  # not the flow's 0.5 %
    assert fill.amount == pytest.approx(0.02) and fill.price == pytest.approx(placed.price)


def test_live_mode_needs_an_exchange_whose_orders_can_be_found_by_client_id(configure, postgres_url):
    """mexc, coinbase and kraken are offered for data and paper trading, but Capandex has no verified
    lookup of their orders by client id: a live start there could not place each order exactly once."""
    from capandex.errors import ValidationFailed

    configure(DATABASE_URL=postgres_url)
    user = uuid.uuid4()
    with transaction() as conn:
        key_id = new_id("key")
        conn.execute(insert(exchange_keys).values(id=key_id, user_id=user, exchange="mexc", label="test",
                                                  api_key_hint="k…", sealed={}, is_valid=True, created_at=utcnow()))
        flow_id = make_flow(conn, user, price_rule_flow(0.0, 1e9), exchange="mexc")
        with pytest.raises(ValidationFailed) as info:
            start_execution(conn, user_id=user, flow_id=flow_id, mode="live", exchange_key_id=key_id)
        assert info.value.details[0]["field"] == "settings.exchange"
        assert "binance, okx, bybit" in info.value.details[0]["message"]
        paper = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper")
    assert paper["mode"] == "paper"
