"""Stop-loss sells through each exchange's ccxt class (the loopbacks speak the wire formats): placed,
found and cancelled by client id, and a fired stop reported with its real fill and fee."""

from __future__ import annotations

import pytest

from capandex.exchanges.orders import OrderFee
from tests.utils.fixtures import VENUES, open_venue

CID, OTHER, UNKNOWN = "cx" + "1" * 30, "cx" + "2" * 30, "cx" + "3" * 30


@pytest.fixture(params=VENUES)
def venue(request, configure):
    with open_venue(request.param, configure, balances={"USDT": 100_000.0, "BTC": 1.0}) as opened:
        yield opened


def test_a_stop_is_placed_found_and_reports_its_fill(venue):
    client = venue.client()
    placed = client.create_stop_order("BTC/USDT", 0.5, 39_000.0, CID)
    assert (placed.status, placed.client_order_id, placed.trigger_price) == ("open", CID, 39_000.0)
    assert venue.book.orders[CID].trigger == 39_000.0 and venue.book.orders[CID].requested == 0.5
    resting = client.fetch_stop_by_client_id("BTC/USDT", CID)
    assert resting is not None and (resting.status, resting.filled or 0.0) == ("open", 0.0)
    venue.book.move_price("BTC/USDT", 38_900.0)
    fired = client.fetch_stop_by_client_id("BTC/USDT", CID)
    assert fired is not None and (fired.status, fired.filled, fired.average) == ("closed", 0.5, 38_900.0)
    assert fired.fees == (OrderFee(pytest.approx(0.5 * 38_900.0 * 0.001), "USDT"),)  # the real fee, not a rate
    assert fired.updated_ms == venue.book.orders[CID].time_ms


def test_cancelling_answers_what_the_stop_became(venue):
    client = venue.client()
    client.create_stop_order("BTC/USDT", 0.4, 38_000.0, OTHER)
    canceled = client.cancel_stop_by_client_id("BTC/USDT", OTHER)
    assert canceled is not None and canceled.status == "canceled" and not canceled.filled
    assert venue.book.orders[OTHER].status == "canceled" and venue.book.locked_of("BTC") == 0.0
    client.create_stop_order("BTC/USDT", 0.5, 39_000.0, CID)
    venue.book.move_price("BTC/USDT", 38_800.0)  # above a Binance stop-limit's limit (1 % under): filled
    fired = client.cancel_stop_by_client_id("BTC/USDT", CID)  # too late: it fired
    assert fired is not None and (fired.status, fired.filled) == ("closed", 0.5)
    assert client.fetch_stop_by_client_id("BTC/USDT", UNKNOWN) is None
    assert client.cancel_stop_by_client_id("BTC/USDT", UNKNOWN) is None
    assert venue.server.unhandled == []


def test_an_okx_stop_is_a_cash_order_not_a_margin_one(configure):
    """ccxt sends OKX spot stop-losses with ``tdMode: cross`` (a margin order) unless told otherwise:
    an account in Spot mode refuses it, and a margin account would borrow to sell coins it no longer
    holds (an algo order reserves nothing while it waits). Capandex's stop is a ``cash`` order."""
    with open_venue("okx", configure, balances={"USDT": 100_000.0, "BTC": 1.0}) as okx:
        okx.client().create_stop_order("BTC/USDT", 0.5, 39_000.0, CID)
        (placed,) = [r for r in okx.server.requests if r.path == "/api/v5/trade/order-algo" and r.method == "POST"]
    assert placed.json()["tdMode"] == "cash" and okx.book.orders[CID].status == "open"
