"""Live webhook calls against the loopback Binance: intend → act → record, resumed after a crash.

A worker that dies between placing the order and recording it leaves the call's intent pending;
the sender's retry (or the execution's next tick) resumes it, finds the order by its client id
and records the fill: one order on the exchange, one position in the database.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert, select

from capandex.db.schema import exchange_keys, executions, new_id, orders, positions, utcnow
from capandex.db.session import transaction
from capandex.engine import BrokerState
from capandex.live import intents, webhooks, worker
from capandex.live.client_ids import client_order_id
from capandex.live.executions import execution_status, start_execution
from capandex.live.orders import LiveGateway, OrderIntent
from tests.capandex.engine.factories import price_rule_flow, random_walk
from tests.capandex.live.helpers import DiesAfterPlacing, make_flow, source_of
from tests.utils.fixtures import open_venue

CANDLES = random_walk(80, seed=5)
PRICE = float(CANDLES.close[40])
HOOK = {"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}


@pytest.fixture
def hook(configure, postgres_url, monkeypatch, entry_clock):
    configure(DATABASE_URL=postgres_url)
    with open_venue("binance", configure, prices={"BTC/USDT": PRICE}) as venue:
        yield _harness(venue, monkeypatch, entry_clock)


def _harness(venue, monkeypatch, clock):
    book = venue.book
    user = uuid.uuid4()
    flow = price_rule_flow(1e12, 0.0)  # the candles never trade: only the webhook does
    flow["nodes"].append(HOOK)
    with transaction() as conn:
        key_id = new_id("key")
        conn.execute(insert(exchange_keys).values(id=key_id, user_id=user, exchange="binance", label="test",
                                                  api_key_hint="k…", sealed={}, is_valid=True, created_at=utcnow()))
        flow_id = make_flow(conn, user, flow)
        token = webhooks.rotate_token(conn, user_id=user, flow_id=flow_id)["token"]
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="live", exchange_key_id=key_id,
                                    now_ms=int(CANDLES.time[40]))["executionId"]
    client = venue.client()
    now = intents.now_ms

    class Harness:
        pass

    h = Harness()
    h.book, h.user, h.execution, h.clock = book, user, execution, clock
    h.gateway = lambda row: LiveGateway(client, row.symbol, 0.001, lookup_pause=0.01)
    h.fire = lambda body, **kw: webhooks.fire(flow_id=flow_id, token=token, body=body,
                                              price=lambda exchange, symbol: PRICE,
                                              gateway=kw.get("gateway", h.gateway))
    def tick(i):
        clock.at_settle(int(CANDLES.time[i]))
        return worker.process_tick(execution, int(CANDLES.time[i]), candles=source_of(CANDLES), gateway=h.gateway)

    h.tick = tick
    h.later = lambda: monkeypatch.setattr(intents, "now_ms", lambda: now() + 91_000)  # the lease expired
    return h




def _state(execution):
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution)).one()
        rows = conn.execute(select(orders.c.status).where(orders.c.execution_id == execution)).scalars().all()
        held = conn.execute(select(positions).where(positions.c.execution_id == execution)).all()
    return row, rows, held


def test_a_call_places_and_records_one_order(hook):
    answer = hook.fire(b'{"action": "buy", "id": "a1"}')
    assert answer["duplicate"] is False and answer["orders"][0]["side"] == "buy"
    assert hook.fire(b'{"action": "buy", "id": "a1"}')["duplicate"] is True
    row, statuses, held = _state(hook.execution)
    assert len(hook.book.placed) == 1 and statuses == ["filled"]
    assert [p.status for p in held] == ["open"] and "pending_tick" not in row.state
    assert held[0].units == pytest.approx(hook.book.orders[hook.book.placed[0]].filled)


def test_worker_dies_between_place_and_record_then_the_retry_records(hook):
    body = b'{"action": "buy", "id": "alert-7"}'
    with pytest.raises(SystemExit):
        hook.fire(body, gateway=lambda row: DiesAfterPlacing(hook.gateway(row)))
    row, statuses, held = _state(hook.execution)
    assert len(hook.book.placed) == 1 and statuses == ["pending"] and held == []
    assert row.state["pending_tick"]["source"] == "webhook"
    assert hook.fire(body)["duplicate"] is True  # a retry while the dead worker's lease runs
    hook.later()
    answer = hook.fire(body)  # the sender's retry after the lease: resumes the intent
    assert answer["duplicate"] is False and len(answer["orders"]) == 1
    row, statuses, held = _state(hook.execution)
    assert len(hook.book.placed) == 1, "exactly one order on the exchange"
    assert statuses == ["filled"] and [p.status for p in held] == ["open"]
    assert held[0].units == pytest.approx(hook.book.orders[hook.book.placed[0]].filled)
    assert "pending_tick" not in row.state and row.state["broker"]["units"] == pytest.approx(held[0].units)
    assert hook.fire(body)["duplicate"] is True


def test_the_next_tick_resumes_a_dead_calls_intent(hook):
    with pytest.raises(SystemExit):
        hook.fire(b"buy", gateway=lambda row: DiesAfterPlacing(hook.gateway(row)))
    hook.later()
    outcome = hook.tick(41)
    assert outcome.status == "done"
    row, statuses, held = _state(hook.execution)
    assert len(hook.book.placed) == 1 and statuses == ["filled"] and [p.status for p in held] == ["open"]
    assert row.last_candle_ms == int(CANDLES.time[41]) and "pending_tick" not in row.state
    with transaction() as conn:
        assert execution_status(conn, user_id=hook.user, execution_id=hook.execution)["openPositions"] == 1
    sell = hook.fire(b"sell")  # the recorded position is what the next call sells
    assert sell["orders"][0]["side"] == "sell" and len(hook.book.placed) == 2
    assert sell["orders"][0]["amount"] == pytest.approx(held[0].units)


def test_a_call_while_a_tick_intent_is_pending_completes_that_first(hook):
    """A tick's intent and a call share one slot, so the call never trades on a stale state."""
    with transaction() as conn:  # a tick (of a flow that buys) intended a buy and its worker died
        row = conn.execute(select(executions).where(executions.c.id == hook.execution)).one()
    intent = OrderIntent(client_order_id(row.id, int(CANDLES.time[41]), "buy"), "buy", 0.01,
                                  PRICE, "signal", "buy")
    broker = BrokerState.start(row.initial_capital).to_dict()
    pending = {"candleMs": int(CANDLES.time[41]), "source": "tick", "intents": [intent.to_dict()],
               "before": broker, "after": broker, "close": PRICE, "entryMs": int(CANDLES.time[42])}
    with transaction() as conn:
        conn.execute(executions.update().where(executions.c.id == row.id)
                     .values(state={**row.state, "pending_tick": pending}))
    hook.later()
    hook.clock.at_settle(int(CANDLES.time[41]))  # the call comes while the tick's buy is still fresh
    answer = hook.fire(b'{"action": "buy", "id": "b1"}')
    assert answer["orders"] == [] and answer["duplicate"] is False  # already long after the tick's buy
    row, statuses, held = _state(hook.execution)
    assert hook.book.placed == [intent.client_order_id] and statuses == ["filled"]
    assert [p.units for p in held] == [pytest.approx(0.01)] and row.last_candle_ms == int(CANDLES.time[41])


def test_a_refused_call_is_notified_as_a_webhook_call(hook):
    from capandex.db.schema import notifications
    from capandex.live.orders import OrderRejected

    hook.book.fail_next("insufficient_balance")
    with pytest.raises(OrderRejected):
        hook.fire(b'{"action": "buy", "id": "poor"}')
    with transaction() as conn:
        (title, message), = conn.execute(select(notifications.c.title, notifications.c.message).where(
            notifications.c.user_id == hook.user, notifications.c.event == "engine_error")).all()
    assert title.endswith("webhook call failed")
    assert "could not process the webhook call of" in message and "candle" not in message
    row, statuses, _ = _state(hook.execution)
    assert row.consecutive_failures == 1 and statuses == ["rejected"]
