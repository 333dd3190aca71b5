"""Orders by client id through the real ccxt classes of every exchange live mode trades on, each
against a loopback server speaking that exchange's order endpoints (signed requests verified):
the exchange's own id parameter goes out, lookups find the order by it, and every refusal comes
back as one typed Capandex error raised ``from`` the ccxt one. Placement is never retried;
lookups are."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from capandex.errors import BadRequest, UpstreamUnavailable
from capandex.exchanges import get_client, retry
from capandex.exchanges.errors import (
    DuplicateClientOrderId,
    InsufficientBalance,
    OrderRejected,
    SymbolNotTradable,
)
from capandex.exchanges.orders import CLIENT_ORDER_IDS
from tests.utils.fixtures import VENUES, Venue, open_venue
from tests.utils.loopback_exchange import server_error

CID = ("cx" + "0123456789abcdef" * 2)[:32]

#: (order endpoint, lookup endpoints) per exchange
PATHS = {"binance": ("/api/v3/order", ("/api/v3/order",)),
         "okx": ("/api/v5/trade/order", ("/api/v5/trade/order",)),
         "bybit": ("/v5/order/create", ("/v5/order/realtime", "/v5/order/history"))}


@pytest.fixture(params=VENUES)
def venue(request: pytest.FixtureRequest, configure, monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    with open_venue(request.param, configure) as opened:
        yield opened


def _placements(venue: Venue) -> list[dict[str, str]]:
    """The bodies of the order placements the server received, whatever their encoding."""
    path = PATHS[venue.id][0]
    return [{**r.query, **r.form} if venue.id == "binance" else r.json()
            for r in venue.server.requests if r.method == "POST" and r.path == path]


def test_a_market_buy_carries_the_exchanges_own_id_parameter_and_base_units(venue: Venue) -> None:
    order = venue.client().create_market_order("BTC/USDT", "buy", 0.025, CID)
    assert venue.book.placed == [CID]
    placed = venue.book.orders[CID]
    assert (placed.side, placed.filled, placed.price) == ("buy", pytest.approx(0.025), venue.book.prices["BTC/USDT"])
    (body,) = _placements(venue)
    assert body[CLIENT_ORDER_IDS[venue.id].create_param] == CID
    assert {"okx": body.get("tgtCcy") == "base_ccy", "bybit": body.get("marketUnit") == "baseCoin",
            "binance": body.get("type") == "MARKET"}[venue.id]
    # the order as the caller gets it: filled at once (OKX and Bybit only acknowledge: looked up)
    assert (order.client_order_id, order.side, order.status) == (CID, "buy", "closed")
    assert order.filled == pytest.approx(0.025) and order.average == pytest.approx(venue.book.prices["BTC/USDT"])
    assert order.cost == pytest.approx(0.025 * venue.book.prices["BTC/USDT"])
    assert [(fee.currency, fee.cost) for fee in order.fees] == [("USDT", pytest.approx(placed.fee))]
    assert venue.server.unhandled == [] and PATHS[venue.id][0] in venue.book.verified


def test_lookup_by_client_id(venue: Venue) -> None:
    client = venue.client()
    assert client.fetch_order_by_client_id("BTC/USDT", CID) is None  # every lookup asked, none knows it
    assert [p for p in venue.book.verified if p != "/v5/account/info" and p != "/v5/user/query-api"] == \
        list(PATHS[venue.id][1])
    client.create_market_order("BTC/USDT", "buy", 0.01, CID)
    found = client.fetch_order_by_client_id("BTC/USDT", CID)
    assert found is not None and found.id == venue.book.orders[CID].order_id
    assert (found.status, found.filled, found.amount) == ("closed", pytest.approx(0.01), pytest.approx(0.01))
    assert client.fetch_order_by_client_id("ETH/USDT", CID) is None  # the id belongs to another market


def test_a_partial_fill_is_not_reported_as_complete(venue: Venue) -> None:
    """Bybit's PartiallyFilledCanceled, which ccxt calls ``closed``, too."""
    venue.book.fail_next("partial_fill")
    order = venue.client().create_market_order("BTC/USDT", "buy", 0.02, CID)
    assert order.status in ("canceled", "expired")
    assert order.filled == pytest.approx(0.01) and order.amount == pytest.approx(0.02)


@pytest.mark.parametrize(("fault", "error", "reason"), [("insufficient_balance", InsufficientBalance,
                                                         "insufficient_balance"),
                                                        ("delisted", SymbolNotTradable, "delisted")])
def test_refusals_are_typed_and_raised_from_the_ccxt_error(venue: Venue, fault: str, error: type[OrderRejected],
                                                           reason: str) -> None:
    import ccxt

    venue.book.fail_next(fault)
    with pytest.raises(error) as info:
        venue.client().create_market_order("BTC/USDT", "buy", 0.01, CID)
    assert info.value.reason == reason and isinstance(info.value.__cause__, ccxt.BaseError)
    assert venue.book.placed == []


def test_insufficient_balance_for_real(venue: Venue) -> None:
    with pytest.raises(InsufficientBalance):
        venue.client().create_market_order("BTC/USDT", "sell", 1.0, CID)  # holds no BTC


def test_a_reused_id_is_a_duplicate_to_look_up(venue: Venue) -> None:
    venue.book.reuse_filled_ids = False
    client = venue.client()
    client.create_market_order("BTC/USDT", "buy", 0.01, CID)
    with pytest.raises(DuplicateClientOrderId):
        client.create_market_order("BTC/USDT", "buy", 0.01, CID)
    assert venue.book.placed == [CID]


def test_placement_is_not_retried_but_lookups_are(venue: Venue) -> None:
    client = venue.client()
    client.symbols()
    create, lookups = PATHS[venue.id][0], PATHS[venue.id][1]
    venue.server.inject(create, server_error(503))
    venue.server.reset_log()
    with pytest.raises(UpstreamUnavailable):
        client.create_market_order("BTC/USDT", "buy", 0.01, CID)
    assert [r.method for r in venue.server.requests if r.path == create].count("POST") == 1
    venue.server.inject(lookups[0], server_error(503), times=2)
    assert client.fetch_order_by_client_id("BTC/USDT", CID) is None  # third attempt answered
    assert venue.book.placed == []


def test_balances_precision_and_minimum(venue: Venue) -> None:
    client = venue.client()
    venue.book.balances["BTC"] = 0.123456789
    assert client.free_balance("BTC") == pytest.approx(0.12345679, abs=1e-8)
    assert client.free_balance("DOGE") is None
    assert client.amount_to_precision("BTC/USDT", 0.123456789) == pytest.approx(0.12345)
    assert client.amount_to_precision("BTC/USDT", 0.000001) == 0.0
    assert client.min_order_amount("BTC/USDT") == pytest.approx(0.00001)


def test_the_okx_signature_check_refuses_a_wrong_secret(configure) -> None:
    from capandex.errors import InvalidCredentials
    from capandex.exchanges import Credentials

    with open_venue("okx", configure) as venue:
        client = get_client("okx", Credentials(venue.credentials.api_key, "wrong", venue.credentials.passphrase))
        with pytest.raises(InvalidCredentials):
            client.fetch_order_by_client_id("BTC/USDT", CID)
        assert venue.book.verified == []


def test_an_exchange_without_client_id_lookups_is_refused(configure) -> None:
    configure(CAPANDEX_EXCHANGE_URLS=json.dumps({"mexc": "http://127.0.0.1:9"}))
    client = get_client("mexc")
    with pytest.raises(BadRequest) as info:
        client.fetch_order_by_client_id("BTC/USDT", CID)
    assert "binance, okx, bybit" in info.value.message


def test_an_ambiguous_placement_costs_bounded_lookups(venue: Venue) -> None:
    """The placement fails with a 5xx and the lookups after it fail too: the client retries a
    failed lookup (the one retry layer, 3 attempts) and the gateway does not loop over it again —
    the outcome is unknown and the tick is retried later with the same id."""
    from capandex.exchanges.retry import DEFAULT_RETRIES
    from capandex.live.orders import LiveGateway, OrderIntent, OrderOutcomeUnknown

    create, lookups = PATHS[venue.id]
    gateway = LiveGateway(venue.client(), "BTC/USDT", 0.001, lookup_pause=0.0)
    venue.client().symbols()
    answer = lambda request, handler: handler(request)  # noqa: E731
    if create == lookups[0]:  # one path: the lookup before placing, the placement, the lookups after it
        venue.server.inject(create, answer)
        venue.server.inject(create, server_error(503), times=20)
    else:
        venue.server.inject(lookups[0], answer)
        venue.server.inject(lookups[0], server_error(503), times=20)
        venue.server.inject(create, server_error(503))
    venue.server.reset_log()
    with pytest.raises(OrderOutcomeUnknown):
        gateway.place(OrderIntent(CID, "buy", 0.01, 40_000.0, "signal", "buy"))
    assert venue.book.placed == []
    gets = sum(1 for r in venue.server.requests if r.path == lookups[0] and r.method == "GET")
    assert gets == 1 + DEFAULT_RETRIES + 1  # before placing; then one retried lookup, not three
