"""Recording a protective stop that stopped resting on the exchange between ticks.

A live tick first asks the exchange about the execution's resting stop (:mod:`.protective`). When
the stop filled, the fill is normally found by the exit of the candle whose range crossed its level
(the exit cancels the stop and gets its fill). This module covers what that cannot see, decided by
:func:`capandex.live.protective.needs_sync`: a stop cancelled outside Capandex (by hand; the tick
then places a new one), one the exchange no longer knows, and a fill inside a candle already
processed or before the first one the tick processes (the exchange rounded the level up, or
triggered on a trade the candle does not show).

The record goes through the intent protocol like an order (source ``stop``): claimed once
(a ``tick_records`` row keyed by a negative hash of the stop's client id, so two workers record it
once), committed, then "acted on" by cancelling the stop — which answers what it became without
changing anything on the exchange — and recorded: the position closes at the stop's real fill
price and fee, exit reason the stop's rule, at the time the exchange filled it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from capandex.live import protective
from capandex.live.intents import IntentSource, PendingIntent, TickOutcome, claim, commit, complete_pending, pending_of
from capandex.live.orders import GatewayFactory
from capandex.live.running import broker_state, flow_name, lock_execution
from capandex.notifications import notify
from capandex.timeutil import now_ms

if TYPE_CHECKING:
    from sqlalchemy import Engine


def sync_key(client_order_id: str) -> int:
    """The intent key of recording the stop ``client_order_id``: negative (never a candle time) and
    apart from webhook keys (a different prefix is hashed)."""
    digest = hashlib.sha256(f"stop:{client_order_id}".encode()).digest()
    return -(int.from_bytes(digest[:8], "big") >> 2) - 1


def sync(row: Any, gateway_for: GatewayFactory, engine: Engine | None, first_ms: int | None, tf_ms: int
         ) -> TickOutcome | None:
    """Record the execution's stop if it no longer rests on the exchange and the tick's candles
    (from ``first_ms``, each ``tf_ms`` long) would not find it; None when there is nothing to record
    (or another worker records it)."""
    from capandex.db.session import transaction

    stop = protective.current(row)
    if not protective.enabled(row) or stop is None or not broker_state(row).long:
        return None
    probe = protective.cancel(stop)
    found = gateway_for(row).stop_state(probe)
    if not protective.needs_sync(stop, found, first_ms, tf_ms):
        return None
    owner, key = uuid.uuid4().hex, sync_key(stop.client_order_id)
    at = found.time_ms if found is not None and found.time_ms else now_ms()
    with transaction(engine=engine) as conn:
        row = lock_execution(conn, row.id)
        if (row is None or pending_of(row) is not None or protective.current(row) != stop
                or not claim(conn, row, key, "stop")):
            return None
        before = broker_state(row)
        close = found.price if found is not None and found.amount > 0 else float(before.entry_price or 0.0)
        intent = PendingIntent(key, IntentSource.STOP, (probe,), before, replace(before, pending=None), close, at,
                               at // tf_ms * tf_ms).leased_to(owner)
        commit(conn, row, intent)
        if found is None or found.amount <= 0:
            name = flow_name(conn, row)
            notify(conn, user_id=row.user_id, event="engine_error", title=f"{name}: stop order gone",
                   message=f"The stop-loss order at {stop.level:,.8g} protecting {name}'s position is no longer on "
                           f"{row.exchange} (cancelled outside Capandex?); Capandex places it again.",
                   action_url=f"/flows/{row.flow_id}")
    return complete_pending(row, intent, gateway_for, engine, owner=owner)
