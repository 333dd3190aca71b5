"""The pending intent as it is persisted in ``executions.state["pending_tick"]``: intents written by
the release before the typed record (camelCase JSON, no ``state``) load, and what is written now
keeps every key that release reads, so running executions survive a deploy in both directions."""

from __future__ import annotations

import pytest

from capandex.engine import BrokerState
from capandex.live import intents
from capandex.live.intents import IntentSource, IntentState, Lease, PendingIntent
from capandex.live.orders import OrderIntent

LONG = {"cash": 5_000.0, "peak": 10_000.0, "units": 0.125, "entry_time": 1_700_000_000_000,
        "entry_price": 40_000.0, "entry_spent": 5_005.0, "highest": 41_000.0, "killed": False, "pending": None,
        "last_time": 1_700_003_600_000}
FLAT = {**BrokerState.start(10_000.0).to_dict(), "last_time": 1_700_003_600_000}

#: a tick's intent exactly as the previous release wrote it (leased by the worker acting on it)
TODAYS_TICK = {
    "candleMs": 1_700_003_600_000, "source": "tick",
    "intents": [{"client_order_id": "cx" + "a" * 30, "side": "sell", "amount": 0.125, "reference_price": 39_000.0,
                 "reason": "stop_loss", "action": "exit:stop_loss"}],
    "before": LONG, "after": {**LONG, "highest": 41_500.0}, "close": 39_000.0, "entryMs": 1_700_007_200_000,
    "lease": {"owner": "4f1c" * 8, "until": 1_700_003_750_000},
}

#: a webhook call's intent as the previous release wrote it: a negative key, its own order candle
TODAYS_CALL = {
    "candleMs": -1_234_567_890_123, "source": "webhook", "orderCandleMs": 1_700_003_612_345,
    "intents": [{"client_order_id": "cx" + "b" * 30, "side": "buy", "amount": 0.2, "reference_price": 40_040.0,
                 "reason": "signal", "action": "webhook:buy"}],
    "before": FLAT, "after": FLAT, "close": 40_000.0, "entryMs": 1_700_003_612_345,
    "lease": {"owner": "9e" * 16, "until": 1_700_003_702_345},
}


def test_a_tick_intent_of_the_previous_release_loads() -> None:
    intent = PendingIntent.from_dict(TODAYS_TICK)
    assert (intent.key, intent.source, intent.state) == (1_700_003_600_000, IntentSource.TICK, IntentState.ACTING)
    assert intent.orders == (OrderIntent("cx" + "a" * 30, "sell", 0.125, 39_000.0, "stop_loss", "exit:stop_loss"),)
    assert intent.before == BrokerState.from_dict(LONG) and intent.after.highest == 41_500.0
    assert (intent.close, intent.entry_ms, intent.order_candle_ms) == (39_000.0, 1_700_007_200_000, 1_700_003_600_000)
    assert intent.lease == Lease("4f1c" * 8, 1_700_003_750_000)
    assert intent.to_dict() == {**TODAYS_TICK, "state": "acting"}  # every key the previous release reads


def test_a_webhook_intent_of_the_previous_release_loads() -> None:
    intent = PendingIntent.from_dict(TODAYS_CALL)
    assert (intent.key, intent.source, intent.order_candle_ms) == (-1_234_567_890_123, IntentSource.WEBHOOK,
                                                                    1_700_003_612_345)
    assert intent.orders[0].action == "webhook:buy" and intent.before == intent.after == BrokerState.from_dict(FLAT)
    assert intent.to_dict() == {**TODAYS_CALL, "state": "acting"}


def test_an_unleased_intent_is_intended_and_a_lease_makes_it_acting(monkeypatch: pytest.MonkeyPatch) -> None:
    unleased = {k: v for k, v in TODAYS_TICK.items() if k != "lease"}
    intent = PendingIntent.from_dict(unleased)
    assert (intent.state, intent.lease) == (IntentState.INTENDED, None)
    assert intent.to_dict() == {**unleased, "state": "intended"}
    monkeypatch.setattr(intents, "now_ms", lambda: 1_000_000)
    acting = intent.leased_to("me")
    assert acting.state is IntentState.ACTING and acting.lease is not None and acting.lease.until_ms > 1_000_000
    assert acting.lease.blocks("someone else", 1_000_000) and not acting.lease.blocks("me", 1_000_000)
    assert not acting.lease.blocks("someone else", acting.lease.until_ms)  # expired: another may take over
    assert PendingIntent.from_dict(acting.to_dict()) == acting
